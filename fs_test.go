package main

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"testing"

	"bazil.org/fuse"

	"vdflat/formats"
)

func TestToErrno(t *testing.T) {
	wrap := func(err error) error { return fmt.Errorf("attach disk: %w", fmt.Errorf("vmdk: x: %w", err)) }
	for _, c := range []struct {
		err  error
		want syscall.Errno
	}{
		{wrap(&os.PathError{Op: "open", Path: "/x", Err: syscall.ENOENT}), syscall.ENOENT},
		{wrap(&os.PathError{Op: "open", Path: "/x", Err: syscall.EACCES}), syscall.EACCES},
		{wrap(&os.PathError{Op: "attach", Path: "/x", Err: syscall.EISDIR}), syscall.EISDIR},
		{wrap(os.ErrNotExist), syscall.ENOENT},
		{wrap(formats.ErrUnknownFormat), errnoUnknownFormat},
		{wrap(formats.ErrCorrupt), syscall.EIO},
		{wrap(&formats.FormatError{Format: "qcow2", Path: "/x", Off: 8, Msg: "bad", Err: formats.ErrUnsupported}), syscall.ENOTSUP},
		{wrap(formats.ErrReadOnly), syscall.EROFS},
		{wrap(formats.ErrInvalid), syscall.EINVAL},
		{wrap(syscall.ETXTBSY), syscall.ETXTBSY},
		{errors.New("anything else"), syscall.EIO},
	} {
		got := toErrno(c.err)
		if got != fuse.Errno(c.want) {
			t.Errorf("toErrno(%v) = %v, want %v", c.err, got, c.want)
		}
	}
	if toErrno(nil) != nil {
		t.Error("toErrno(nil) is not nil")
	}
}
