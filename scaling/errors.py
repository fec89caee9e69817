"""The one exception type for mistakes a user can fix (bad config, bad corpus, bad fit input)."""


class UserError(Exception):
  """A mistake in the user's input. The CLI prints its message on one line and exits 2."""
