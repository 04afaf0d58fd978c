"""opsdash's voice (design.md section 9): the pure rule engine, the built-in rules, and the notifier
that sends Alertmanager-compatible notifications."""
