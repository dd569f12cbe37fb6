package milter

import "syscall"

// errTooManyFiles is retried by Serve like a temporary accept error.
var errTooManyFiles = syscall.EMFILE
