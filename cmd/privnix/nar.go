package main

// NarCmd is filled in by the formats work (issue 2).
type NarCmd struct{}
