"""Where marn reads, writes and deletes: `files` (one file-access API for local paths and any Beam file
system URL), `ownership` (what a command may write and delete), `locks` (one command per directory)."""
