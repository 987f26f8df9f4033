//! CSV records with bounded memory, on `csv-core`.
//!
//! `csv::Reader` grows a record's buffer without limit, so one unclosed quote in a 10-million
//! row file would pull the rest of the file into memory as a single field. This reader caps a
//! record's size and field count: past the cap, the rest of the record is parsed into scratch
//! space and dropped, and the record is marked as overflowed (a row reject, not a crash).
//! It also strips a UTF-8 BOM, detects the delimiter from the header line, and reports the
//! line each record starts on.

use std::io::{self, Read};

const INPUT_BUFFER: usize = 256 * 1024;
/// How much of the file is examined to pick the delimiter.
const SNIFF_LIMIT: usize = 64 * 1024;

/// One record: its fields' bytes back to back, and where each field ends.
#[derive(Debug, Default, Clone)]
pub(crate) struct Record {
    /// The line the record starts on (1-based).
    pub(crate) line: u64,
    pub(crate) data: Vec<u8>,
    pub(crate) ends: Vec<usize>,
    /// The record exceeded the size or field-count cap; its fields are incomplete.
    pub(crate) overflow: bool,
    /// The file ended inside a quoted field of this record: every line after the quote was
    /// read into it.
    pub(crate) unclosed: bool,
}

impl Record {
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    pub(crate) fn field(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.data.get(start..end)
    }

    fn clear(&mut self) {
        self.data.clear();
        self.ends.clear();
        self.overflow = false;
        self.unclosed = false;
    }
}

pub(crate) struct Records<R> {
    input: R,
    core: csv_core::Reader,
    buf: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
    bytes: u64,
    delimiter: u8,
    max_record: usize,
    max_fields: usize,
    scratch: Vec<u8>,
    scratch_ends: Vec<usize>,
}

impl<R: Read> Records<R> {
    /// Opens a CSV stream: reads the first block, strips a BOM, detects the delimiter.
    pub(crate) fn new(input: R, max_record: usize, max_fields: usize) -> io::Result<Self> {
        let mut me = Self {
            input,
            core: csv_core::Reader::new(),
            buf: vec![0; INPUT_BUFFER].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
            bytes: 0,
            delimiter: b',',
            max_record,
            max_fields,
            scratch: vec![0; 64 * 1024],
            scratch_ends: vec![0; 1024],
        };
        // Fill enough to see the whole header line (or the sniff limit).
        while !me.eof && me.end < SNIFF_LIMIT && !me.buf[..me.end].contains(&b'\n') {
            me.fill()?;
        }
        if me.buf[..me.end].starts_with(b"\xEF\xBB\xBF") {
            me.start = 3;
        }
        me.delimiter = sniff_delimiter(&me.buf[me.start..me.end.min(me.start + SNIFF_LIMIT)]);
        me.core = csv_core::ReaderBuilder::new()
            .delimiter(me.delimiter)
            .build();
        Ok(me)
    }

    pub(crate) fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// Bytes read from the input so far.
    pub(crate) fn bytes_read(&self) -> u64 {
        self.bytes
    }

    fn fill(&mut self) -> io::Result<()> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        if self.end == self.buf.len() {
            return Ok(());
        }
        loop {
            match self.input.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(());
                }
                Ok(n) => {
                    self.end += n;
                    self.bytes += n as u64;
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Skips blank lines between records, so a record's line number is where it starts.
    fn skip_blank_lines(&mut self) -> io::Result<()> {
        loop {
            let mut newlines = 0;
            while self.start < self.end && matches!(self.buf[self.start], b'\r' | b'\n') {
                newlines += u64::from(self.buf[self.start] == b'\n');
                self.start += 1;
            }
            self.core.set_line(self.core.line() + newlines);
            if self.start < self.end || self.eof {
                return Ok(());
            }
            self.fill()?;
        }
    }

    /// Reads the next record into `rec`. Returns `false` at the end of the input.
    pub(crate) fn read(&mut self, rec: &mut Record) -> io::Result<bool> {
        use csv_core::ReadRecordResult as R;
        rec.clear();
        self.skip_blank_lines()?;
        rec.line = self.core.line();
        // Reuse what the record already holds; start small, never above the caps.
        rec.data
            .resize(rec.data.capacity().max(256).min(self.max_record.max(1)), 0);
        rec.ends
            .resize(rec.ends.capacity().max(16).min(self.max_fields.max(1)), 0);
        let (mut outlen, mut endlen) = (0usize, 0usize);
        // Whether this record has taken any input, and whether the line break that ends a
        // file inside a record has been given to it (see below).
        let (mut begun, mut ended) = (false, false);
        loop {
            if self.start == self.end && !self.eof {
                self.fill()?;
            }
            // The file ends inside this record. A line break ends the record as the end of
            // the file would (the parser cannot be asked whether it stands in a quoted
            // field), unless a quoted field is still open: that takes the line break in as
            // its own, and the record is marked (it is rejected whole, so the byte it
            // gained does not matter).
            let at_end = begun && !ended && self.eof && self.start == self.end;
            let input = if at_end {
                &b"\n"[..]
            } else {
                &self.buf[self.start..self.end]
            };
            begun |= !input.is_empty();
            let (res, nin, nout, nend) = if rec.overflow {
                self.core
                    .read_record(input, &mut self.scratch, &mut self.scratch_ends)
            } else {
                self.core
                    .read_record(input, &mut rec.data[outlen..], &mut rec.ends[endlen..])
            };
            if at_end {
                ended = nin > 0;
                rec.unclosed = ended && matches!(res, R::InputEmpty);
            } else {
                self.start += nin;
            }
            if !rec.overflow {
                outlen += nout;
                endlen += nend;
            }
            match res {
                R::InputEmpty => {}
                R::OutputFull if !rec.overflow => {
                    if rec.data.len() >= self.max_record {
                        rec.overflow = true;
                    } else {
                        let len = (rec.data.len() * 2).min(self.max_record);
                        rec.data.resize(len, 0);
                    }
                }
                R::OutputEndsFull if !rec.overflow => {
                    if rec.ends.len() >= self.max_fields {
                        rec.overflow = true;
                    } else {
                        let len = (rec.ends.len() * 2).min(self.max_fields);
                        rec.ends.resize(len, 0);
                    }
                }
                // Scratch space is full again: keep draining.
                R::OutputFull | R::OutputEndsFull => {}
                R::Record => {
                    rec.data.truncate(outlen);
                    rec.ends.truncate(endlen);
                    return Ok(true);
                }
                R::End => {
                    rec.data.truncate(0);
                    rec.ends.truncate(0);
                    return Ok(false);
                }
            }
        }
    }
}

/// Picks `,`, `;` or tab: whichever occurs most often outside quotes on the header line.
/// Ties and headers with none of them (a single column) mean `,`.
fn sniff_delimiter(head: &[u8]) -> u8 {
    let mut counts = [0usize; 3];
    let mut in_quotes = false;
    for &b in head {
        match b {
            b'"' => in_quotes = !in_quotes,
            b'\n' | b'\r' if !in_quotes => break,
            b',' if !in_quotes => counts[0] += 1,
            b';' if !in_quotes => counts[1] += 1,
            b'\t' if !in_quotes => counts[2] += 1,
            _ => {}
        }
    }
    let best = [b',', b';', b'\t']
        .into_iter()
        .zip(counts)
        .fold(
            (b',', 0),
            |acc, (d, n)| if n > acc.1 { (d, n) } else { acc },
        );
    best.0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> (u8, Vec<(u64, Vec<String>, bool)>) {
        let mut r = Records::new(input, 64, 8).unwrap();
        let mut rec = Record::default();
        let mut out = Vec::new();
        while r.read(&mut rec).unwrap() {
            let fields = (0..rec.len())
                .map(|i| String::from_utf8_lossy(rec.field(i).unwrap()).into_owned())
                .collect();
            out.push((rec.line, fields, rec.overflow));
        }
        (r.delimiter(), out)
    }

    #[test]
    fn quoted_fields_embedded_newlines_crlf_and_line_numbers() {
        let (d, recs) = all(b"phone,note\r\n+1,\"a, \"\"b\"\"\r\nc\"\r\n\r\n+2,d\n");
        assert_eq!(d, b',');
        assert_eq!(recs[0], (1, vec!["phone".into(), "note".into()], false));
        assert_eq!(
            recs[1],
            (2, vec!["+1".into(), "a, \"b\"\r\nc".into()], false)
        );
        assert_eq!(
            recs[2],
            (5, vec!["+2".into(), "d".into()], false),
            "blank line skipped, line kept"
        );
        assert_eq!(recs.len(), 3);
    }

    #[test]
    fn bom_and_delimiters_are_detected() {
        let (d, recs) = all(b"\xEF\xBB\xBFphone;name\n+1;x\n");
        assert_eq!(d, b';');
        assert_eq!(recs[0].1, ["phone", "name"]);
        let (d, _) = all(b"phone\tname\tcity\n");
        assert_eq!(d, b'\t');
        let (d, _) = all(b"\"a;b\",c\n");
        assert_eq!(d, b',', "delimiters inside quotes do not count");
        let (d, recs) = all(b"phone\n+1\n");
        assert_eq!((d, recs.len()), (b',', 2));
    }

    #[test]
    fn oversized_records_are_marked_and_skipped_without_losing_the_next() {
        let long = "x".repeat(500);
        let input = format!("phone,v\n+1,{long}\n+2,ok\n\"unclosed,{long}\n+3,y\n");
        let (_, recs) = all(input.as_bytes());
        assert!(!recs[0].2);
        assert!(recs[1].2, "500 bytes is over the 64-byte cap");
        assert_eq!(recs[2], (3, vec!["+2".into(), "ok".into()], false));
        // An unclosed quote swallows the rest of the file: one overflowed record, no crash.
        assert!(recs[3].2);
        assert_eq!(recs.len(), 4);
    }

    #[test]
    fn too_many_fields_overflow() {
        let (_, recs) = all(b"a\n1,2,3,4,5,6,7,8,9,10\n2\n");
        assert!(recs[1].2);
        assert_eq!(recs[2].1, ["2"]);
    }

    /// Whether each record was left with a quote open at the end of the file.
    fn unclosed(input: &[u8]) -> Vec<bool> {
        let mut r = Records::new(input, 64, 8).unwrap();
        let mut rec = Record::default();
        let mut out = Vec::new();
        while r.read(&mut rec).unwrap() {
            out.push(rec.unclosed);
        }
        out
    }

    #[test]
    fn a_quote_left_open_at_the_end_of_the_file_is_told() {
        assert_eq!(
            unclosed(b"phone,name\n+1,\"Bob\n+2,Cy\n"),
            [false, true],
            "the open quote took the last line"
        );
        assert_eq!(unclosed(b"phone,name\n+1,\"Bob"), [false, true]);
        assert_eq!(unclosed(b"phone,name\n+1,\"a \"\"b\"\" c"), [false, true]);
        // Closed quotes, with or without a last line break, and a stray quote mid-field.
        for whole in [
            &b"phone,name\n+1,\"Bob\n Jr\"\n"[..],
            b"phone,name\n+1,\"Bob\"",
            b"phone,name\n+1,O\"Brien\n",
            b"phone,name\n+1,O\"Brien",
            b"phone,name\n+1,Bob",
            b"phone,name\r\n+1,\"Bob\"\r\n",
        ] {
            assert_eq!(
                unclosed(whole),
                [false, false],
                "{}",
                String::from_utf8_lossy(whole)
            );
        }
        // Past the size cap the record is read on to its end all the same.
        let long = "x".repeat(500);
        assert_eq!(
            unclosed(format!("phone\n\"{long}\n+2\n").as_bytes()),
            [false, true]
        );
    }

    #[test]
    fn a_last_line_without_newline_is_read() {
        let (_, recs) = all(b"phone\n+1");
        assert_eq!(recs[1].1, ["+1"]);
        let (_, recs) = all(b"");
        assert!(recs.is_empty());
    }
}
