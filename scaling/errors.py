"""The one exception type for mistakes a user can fix (bad config, bad corpus, bad fit input)."""


class UserError(Exception):
  """A mistake in the user's input. The CLI prints its message on one line and exits 2."""


class WriteFailed(UserError):
  """A write into the run directory failed (a full disk): background writer threads of the
  checkpoint library may still be failing, so the command exits at once after saying so."""
