package formats

import "syscall"

const noatime = syscall.O_NOATIME
