"""Run directories: the result store, the manifest, resume, exports."""
