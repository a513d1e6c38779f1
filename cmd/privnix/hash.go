package main

// HashCmd is filled in by the formats work (issue 2).
type HashCmd struct{}
