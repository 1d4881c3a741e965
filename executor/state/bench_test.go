package state

import (
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// BenchmarkPutEach puts one record per transaction: one fsync'd commit
// (and one open and close of the file) per op.
func BenchmarkPutEach(b *testing.B) {
	s, _ := openTemp(b)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if err := s.Put(testInstance(i % 1000)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUpdateBatch1000 puts 1,000 records in one transaction per op.
func BenchmarkUpdateBatch1000(b *testing.B) {
	s, _ := openTemp(b)
	b.ReportAllocs()
	for b.Loop() {
		err := s.Update(func(tx *Tx) error {
			for i := range 1000 {
				if err := tx.Put(testInstance(i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkList10000 lists (decodes and sorts) 10,000 records.
func BenchmarkList10000(b *testing.B) {
	s, _ := openTemp(b)
	for base := 0; base < 10000; base += 1000 {
		err := s.Update(func(tx *Tx) error {
			for i := base; i < base+1000; i++ {
				if err := tx.Put(testInstance(i)); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		list, err := s.List()
		if err != nil || len(list) != 10000 {
			b.Fatal(len(list), err)
		}
	}
}

// BenchmarkOpen* measure the check every open makes (meta pages, a walk
// of every page in use) against a bare bbolt open and close, for 1,000
// and 10,000 records; BenchmarkCheck* the full check (orch state check).
func BenchmarkVerify1000(b *testing.B)    { benchVerify(b, 1000, false) }
func BenchmarkVerify10000(b *testing.B)   { benchVerify(b, 10000, false) }
func BenchmarkCheck1000(b *testing.B)     { benchVerify(b, 1000, true) }
func BenchmarkCheck10000(b *testing.B)    { benchVerify(b, 10000, true) }
func BenchmarkOpenRO10000(b *testing.B)   { benchOpen(b, 10000) }
func BenchmarkBareOpen10000(b *testing.B) { benchBareOpen(b, 10000) }

func benchVerify(b *testing.B, n int, full bool) {
	path := writeState(b, b.TempDir(), n)
	b.ReportAllocs()
	for b.Loop() {
		got, err := verify(path, full)
		if err != nil || got != n {
			b.Fatal(got, err)
		}
	}
}

// benchOpen is OpenReadOnly and one List, what orch status does.
func benchOpen(b *testing.B, n int) {
	path := writeState(b, b.TempDir(), n)
	for b.Loop() {
		s, err := OpenReadOnly(path)
		if err != nil {
			b.Fatal(err)
		}
		if l, err := s.List(); err != nil || len(l) != n {
			b.Fatal(err)
		}
		s.Close()
	}
}

func benchBareOpen(b *testing.B, n int) {
	path := writeState(b, b.TempDir(), n)
	for b.Loop() {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			b.Fatal(err)
		}
		db.Close()
	}
}

// BenchmarkStopRecords1000 rewrites 1,000 records of about 1.5 KB of
// configuration each with another status and the same configuration, in
// one transaction per op: what a stop of 1,000 daemons records. apart:
// the configurations are kept apart (file format 2); inline: they are in
// their records (their hashes are not theirs, as in format 1).
func BenchmarkStopRecords1000(b *testing.B) {
	for _, apart := range []bool{true, false} {
		name := map[bool]string{true: "apart", false: "inline"}[apart]
		b.Run(name, func(b *testing.B) {
			s, _ := openTemp(b)
			insts := make([]Instance, 1000)
			for i := range insts {
				insts[i] = hashedInstance(i)
				if !apart {
					insts[i].ConfigHash = strings.Repeat("0", 64)
				}
			}
			status := []string{"running", "stopped"}
			put := func(n int) {
				err := s.Update(func(tx *Tx) error {
					for _, inst := range insts {
						inst.Status = status[n%2]
						if err := tx.Put(inst); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			put(0)
			b.ReportAllocs()
			n := 1
			for b.Loop() {
				put(n)
				n++
			}
		})
	}
}
