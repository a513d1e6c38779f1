package main

// StorePathCmd is filled in by the formats work (issue 2).
type StorePathCmd struct{}
