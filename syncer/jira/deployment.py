"""Jira Cloud and Jira Data Center: where the two differ, in one object each.

The client reads `deploymentType` from `/rest/api/2/serverInfo` once and uses that deployment's
style for every call (Data Center reports itself as "Server"). Sources: Atlassian's REST v2
descriptions (Cloud: `GET|POST /rest/api/2/search/jql`, `nextPageToken`, no `total`; users by
`accountId`, `user/search?query=`. Data Center: `POST /rest/api/2/search`, `startAt`/`total`, and with
`validateQuery` false the issues a query names that do not exist come back as `warningMessages`, not
a 400; users by `name`, `user/search?username=`). Credentials pick the authentication, not the deployment: an
e-mail and API token are Basic auth (Cloud), a personal access token is a Bearer token (Data Center).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TICKET_FIELDS = ["status", "resolution", "assignee", "labels", "project", "updated", "issuetype", "priority"]
PAGE_SIZE = 100


@dataclass(frozen=True)
class Deployment(ABC):
    name: str  # serverInfo's deploymentType: "Cloud" or "Server"
    search_path: str
    user_id_field: str  # what names a person in assignee, myself and user search answers
    user_search_param: str
    # How `user/assignable/search` and `GET /user` take one account by its id: Cloud `accountId`
    # (matched exactly), Data Center `username` (a prefix match there: exact hits are picked).
    user_id_param: str
    # Fields an exact match of a wanted e-mail (or name) is looked for in, in order: the first field
    # that gives any match decides.
    user_match_fields: tuple[str, ...]
    no_user_found: str

    def user_ref(self, account_id: str | None) -> dict[str, str | None]:
        """A user as Jira takes one in `fields.assignee` and `PUT .../assignee` (None: nobody)."""
        return {self.user_id_field: account_id}

    @abstractmethod
    def first_page(self, jql: str) -> dict[str, Any]:
        """The body of the first search request."""

    @abstractmethod
    def next_page(self, body: dict[str, Any], answer: Mapping[str, Any], issues: Sequence[Any]) -> bool:
        """Move `body` on to the next page of the search that answered `answer`; False at the end."""


class _Cloud(Deployment):
    def first_page(self, jql: str) -> dict[str, Any]:
        return {"jql": jql, "fields": TICKET_FIELDS, "maxResults": PAGE_SIZE}

    def next_page(self, body: dict[str, Any], answer: Mapping[str, Any], issues: Sequence[Any]) -> bool:
        # No total on Cloud: follow nextPageToken until there is none (or Jira says isLast).
        token = answer.get("nextPageToken")
        if answer.get("isLast") is True or not isinstance(token, str) or not token \
                or token == body.get("nextPageToken"):
            return False
        body["nextPageToken"] = token
        return True


class _DataCenter(Deployment):
    def first_page(self, jql: str) -> dict[str, Any]:
        # validateQuery false (the legacy spelling of "warn", understood by old and new Server/DC
        # alike): a deleted issue named in the JQL becomes a warning instead of a 400 for the query.
        return {"jql": jql, "fields": TICKET_FIELDS, "maxResults": PAGE_SIZE, "startAt": 0,
                "validateQuery": False}

    def next_page(self, body: dict[str, Any], answer: Mapping[str, Any], issues: Sequence[Any]) -> bool:
        body["startAt"] += len(issues)
        total = answer.get("total")
        return bool(issues) and isinstance(total, int) and body["startAt"] < total


CLOUD: Deployment = _Cloud(
    name="Cloud",
    search_path="search/jql",
    user_id_field="accountId",
    user_search_param="query",
    user_id_param="accountId",
    user_match_fields=("emailAddress",),
    no_user_found="no Jira user with that e-mail",
)
DATA_CENTER: Deployment = _DataCenter(
    name="Server",
    search_path="search",
    user_id_field="name",
    user_search_param="username",
    user_id_param="username",
    user_match_fields=("name", "emailAddress"),
    no_user_found="no Jira user with that name or e-mail",
)


def from_server_info(info: Mapping[str, Any]) -> Deployment:
    """The deployment a serverInfo answer describes; anything but Cloud is Data Center (Server)."""
    return CLOUD if info.get("deploymentType") == "Cloud" else DATA_CENTER
