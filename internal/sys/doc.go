// Package sys holds the few raw system calls the root monitor makes, in one
// place an auditor can read.
package sys
