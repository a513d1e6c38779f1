package main

// KeyCmd is filled in by the formats work (issue 2).
type KeyCmd struct{}
