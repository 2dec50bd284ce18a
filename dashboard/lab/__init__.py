"""Running and inspecting the lab: server, supervisor, `Lab`, checker, history, scenarios. Never imports Textual."""
