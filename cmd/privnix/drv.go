package main

// DrvCmd is filled in by the formats work (issue 2).
type DrvCmd struct{}
