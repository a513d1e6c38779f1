package main

// HashPathCmd is filled in by the NAR work (issue 2): `privnix hash path`.
type HashPathCmd struct{}
