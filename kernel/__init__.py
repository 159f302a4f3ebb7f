"""The kernel: generic helpers every app builds on (errors, roles, HTTP answers, audit and
workflow helpers, money, periods). It imports no project app (import-linter checks it)."""
