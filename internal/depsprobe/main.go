package main
import (
 _ "github.com/vmihailenco/msgpack/v5"
 _ "github.com/dgraph-io/badger/v4"
 _ "github.com/alecthomas/kong"
 _ "golang.org/x/sys/unix"
)
func main(){}
