"""The web process: webhook intake and health (app), and the threads that store and publish (intake)."""
