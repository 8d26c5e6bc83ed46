package formats

import "errors"

// Apple Data Compression (ADC), the LZ77 variant of the oldest compressed
// UDIF images (UDCO, chunk type 0x80000004). The stream is a sequence of
// tags, each starting with one byte:
//
//	1LLLLLLL                  literal run of L+1 bytes that follow
//	01LLLLLL DDDDDDDD DDDDDDDD copy L+4 bytes from D+1 bytes back
//	0LLLLDDD DDDDDDDD          copy L+3 bytes from D+1 bytes back (D 10 bits)
//
// Copies may overlap their own output (a run of one repeated byte).

var (
	adcErrTruncated = errors.New("adc: compressed data truncated")
	adcErrOverflow  = errors.New("adc: output larger than the declared size")
	adcErrDistance  = errors.New("adc: copy distance before the start of the output")
)

// adcDecode decodes src into dst and returns the number of bytes written.
// It never writes past len(dst): output that does not fit is an error.
func adcDecode(dst, src []byte) (int, error) {
	o := 0
	for i := 0; i < len(src); {
		b := src[i]
		var n, dist int
		switch {
		case b&0x80 != 0:
			n = int(b&0x7f) + 1
			if n > len(src)-i-1 {
				return o, adcErrTruncated
			}
			if n > len(dst)-o {
				return o, adcErrOverflow
			}
			copy(dst[o:], src[i+1:i+1+n])
			o += n
			i += 1 + n
			continue
		case b&0x40 != 0:
			if len(src)-i < 3 {
				return o, adcErrTruncated
			}
			n = int(b&0x3f) + 4
			dist = int(src[i+1])<<8 | int(src[i+2])
			i += 3
		default:
			if len(src)-i < 2 {
				return o, adcErrTruncated
			}
			n = int(b>>2) + 3
			dist = int(b&3)<<8 | int(src[i+1])
			i += 2
		}
		dist++
		if dist > o {
			return o, adcErrDistance
		}
		if n > len(dst)-o {
			return o, adcErrOverflow
		}
		adcCopyMatch(dst, o, dist, n)
		o += n
	}
	return o, nil
}

// adcCopyMatch copies n bytes from dist bytes back to dst[o:], byte by byte in
// effect, so a short distance repeats the pattern (LZ77 semantics). The
// caller has checked 0 < dist <= o and o+n <= len(dst).
func adcCopyMatch(dst []byte, o, dist, n int) {
	if dist >= n {
		copy(dst[o:o+n], dst[o-dist:])
		return
	}
	// Overlapping: each copy doubles the repeated pattern.
	end := o + n
	for o < end {
		c := copy(dst[o:end], dst[o-dist:o])
		o += c
		dist += c
	}
}
