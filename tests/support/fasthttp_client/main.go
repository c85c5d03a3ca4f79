// A client of the story, for tests/integration/culprit.rs: WORKERS goroutines each send GET URL
// in a loop through one fasthttp.Client whose ReadTimeout is TIMEOUT_MS; against a server that
// never answers, every request times out and fasthttp closes its connection.
//
//	fasthttp_client URL WORKERS TIMEOUT_MS
package main

import (
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"
)

func main() {
	workers, _ := strconv.Atoi(os.Args[2])
	timeout, _ := strconv.Atoi(os.Args[3])
	client := &fasthttp.Client{ReadTimeout: time.Duration(timeout) * time.Millisecond}
	for i := 0; i < workers; i++ {
		go func() {
			for {
				req := fasthttp.AcquireRequest()
				resp := fasthttp.AcquireResponse()
				req.SetRequestURI(os.Args[1])
				_ = client.Do(req, resp)
				fasthttp.ReleaseRequest(req)
				fasthttp.ReleaseResponse(resp)
			}
		}()
	}
	fmt.Println("ready")
	select {}
}
