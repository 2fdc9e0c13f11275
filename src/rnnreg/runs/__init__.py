"""What a training run leaves on disk, and reading it back."""

from .run_dir import RunDir, new_run_dir, open_run_dir

__all__ = ["RunDir", "new_run_dir", "open_run_dir"]
