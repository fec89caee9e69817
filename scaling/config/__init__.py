"""The configuration: config files and overrides (load), the defaults, the typed spec."""
