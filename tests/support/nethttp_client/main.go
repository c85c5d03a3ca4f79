// A client of the story, for tests/integration/culprit.rs: WORKERS goroutines each send GET URL
// in a loop, each request through an http.Client with a Transport of its own, made for it and
// closed after it, so that no connection is ever reused (the Go version of "a client per
// request"; Go's standard library only, built with Debian's Go).
//
//	nethttp_client URL WORKERS
package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"time"
)

func main() {
	workers, _ := strconv.Atoi(os.Args[2])
	for i := 0; i < workers; i++ {
		go func() {
			for {
				transport := &http.Transport{}
				client := &http.Client{Transport: transport, Timeout: 5 * time.Second}
				resp, err := client.Get(os.Args[1])
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				} else {
					time.Sleep(100 * time.Millisecond)
				}
				transport.CloseIdleConnections()
			}
		}()
	}
	fmt.Println("ready")
	select {}
}
