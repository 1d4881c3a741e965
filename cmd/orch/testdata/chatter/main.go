// Command chatter writes numbered lines to stdout at a steady rate, for
// the benchmarks of orch up's output forwarding: -rate lines a second in
// batches every 10 ms, -n lines in all (0: until killed).
package main

import (
	"bufio"
	"flag"
	"os"
	"strconv"
	"time"
)

func main() {
	rate := flag.Int("rate", 1000, "lines a second")
	n := flag.Int("n", 0, "lines in all; 0: until killed")
	id := flag.String("id", "chatter", "the first word of each line")
	flag.Parse()
	w := bufio.NewWriterSize(os.Stdout, 64<<10)
	perTick := max(*rate/100, 1)
	t := time.NewTicker(10 * time.Millisecond)
	line := []byte(*id + " line ")
	for i := 0; *n == 0 || i < *n; {
		<-t.C
		for k := 0; k < perTick && (*n == 0 || i < *n); k++ {
			w.Write(line)
			w.WriteString(strconv.Itoa(i))
			w.WriteString(" the quick brown fox jumps over the lazy dog\n")
			i++
		}
		w.Flush()
	}
	w.Flush()
}
