"""Worker (14_running_generator_thread: old code is still running when the patch comes)."""
