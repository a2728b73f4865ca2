"""Slack at the edge: the Web API client and the requests Slack sends (Events API, interactivity)."""
