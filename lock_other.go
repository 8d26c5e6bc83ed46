//go:build !linux

package main

// imageLocks: qemu's image locks are open file description locks, which
// FreeBSD does not have; qemu there locks nothing either.
type imageLocks struct{}

func lockForWriting(paths []string) (*imageLocks, error) { return &imageLocks{}, nil }
func foreignWriter(path string) bool                     { return false }
func (l *imageLocks) release()                           {}
