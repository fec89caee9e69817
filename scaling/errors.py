"""The one exception type for mistakes a user can fix (bad config, bad corpus, bad fit input)."""


class UserError(Exception):
  """A mistake in the user's input. The CLI prints its message on one line and exits 2."""


class StorageError(UserError):
  """Checkpoints could not be written (a full disk) or none could be read back. The checkpoint
  library's background threads may still be failing and printing, so the CLI silences them and
  exits at once after its one-line verdict."""


class Preempted(Exception):
  """SIGTERM arrived: a checkpoint was written and the run can be resumed."""
