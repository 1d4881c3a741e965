package state

import "testing"

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
