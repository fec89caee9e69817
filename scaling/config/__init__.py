"""The configuration: the typed spec (every field once), the default ConfigDict built from it,
config files and overrides."""
