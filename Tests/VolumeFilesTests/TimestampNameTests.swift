import Glibc
import Testing

@testable import VolumeFiles

/// The version directory's name: `..YYYY_MM_DD_HH_MM_SS.nanoseconds_suffix` in UTC, as
/// kubelet's atomic writer names them (so they sort by time).
struct TimestampNameTests {
  static func pad(_ value: Int32, _ width: Int) -> String {
    let digits = String(value)
    return String(repeating: "0", count: max(0, width - digits.count)) + digits
  }

  @Test func layoutAndUTCDate() {
    var before = time(nil)
    var name = ""
    var after = before
    // Retry across a second boundary so that both clocks name the same second.
    for _ in 0..<5 {
      before = time(nil)
      name = String(decoding: AtomicWriter.timestampName(), as: UTF8.self)
      after = time(nil)
      if before == after { break }
    }
    let bytes = Array(name.utf8)
    let shape = Array("..dddd_dd_dd_dd_dd_dd.ddddddddd_xxxxxxxx".utf8)
    #expect(bytes.count == shape.count, "\(name)")
    for (i, (c, s)) in zip(bytes, shape).enumerated() {
      switch s {
      case UInt8(ascii: "d"): #expect((0x30...0x39).contains(c), "digit expected at \(i) in \(name)")
      case UInt8(ascii: "x"): #expect((0x30...0x39).contains(c) || (0x61...0x66).contains(c), "hex at \(i) in \(name)")
      default: #expect(c == s, "\(Character(UnicodeScalar(s))) expected at \(i) in \(name)")
      }
    }
    var tm = Glibc.tm()
    var t = before
    gmtime_r(&t, &tm)
    let expected = ".." + Self.pad(tm.tm_year + 1900, 4) + "_" + Self.pad(tm.tm_mon + 1, 2) + "_"
      + Self.pad(tm.tm_mday, 2) + "_" + Self.pad(tm.tm_hour, 2) + "_" + Self.pad(tm.tm_min, 2) + "_"
      + Self.pad(tm.tm_sec, 2) + "."
    if before == after { #expect(name.hasPrefix(expected), "\(name) vs \(expected)") }
  }

  @Test func twoNamesInARowDiffer() {
    #expect(AtomicWriter.timestampName() != AtomicWriter.timestampName())
  }
}
