import FoundationEssentials
import Glibc

/// When the service-account tokens kubelet handed a volume expire: the earliest
/// `expirationTimestamp` in `csi.storage.k8s.io/serviceAccount.tokens` (in the volume
/// context, or in `secrets` on newer kubelets). A timer-driven refresh may reuse the
/// tokens only until then; after that the volume waits for kubelet's next republish.
enum TokenExpiry {
  private struct Entry: Decodable {
    var expirationTimestamp: String?
  }

  /// Seconds since the epoch; nil when there are no tokens or none says when it expires.
  static func earliest(volumeContext: [String: String], secrets: [String: String]) -> Double? {
    guard let json = volumeContext[PodVolume.tokensKey] ?? secrets[PodVolume.tokensKey],
      let entries = try? JSONDecoder().decode([String: Entry].self, from: Data(json.utf8))
    else { return nil }
    return entries.values.compactMap { $0.expirationTimestamp.flatMap(parseRFC3339) }.min()
  }

  /// `2026-12-03T07:00:00Z`, with optional fractional seconds and a `±hh:mm` offset.
  static func parseRFC3339(_ text: String) -> Double? {
    let b = Array(text.utf8)
    func number(_ range: Range<Int>) -> Int? {
      guard range.upperBound <= b.count else { return nil }
      var v = 0
      for i in range {
        guard b[i] >= 0x30 && b[i] <= 0x39 else { return nil }
        v = v * 10 + Int(b[i] - 0x30)
      }
      return v
    }
    guard b.count >= 20, b[4] == UInt8(ascii: "-"), b[7] == UInt8(ascii: "-"), b[10] == UInt8(ascii: "T") || b[10] == UInt8(ascii: "t"),
      b[13] == UInt8(ascii: ":"), b[16] == UInt8(ascii: ":"),
      let year = number(0..<4), let month = number(5..<7), let day = number(8..<10),
      let hour = number(11..<13), let minute = number(14..<16), let second = number(17..<19)
    else { return nil }
    var i = 19
    var fraction = 0.0
    if i < b.count, b[i] == UInt8(ascii: ".") {
      i += 1
      var scale = 0.1
      while i < b.count, b[i] >= 0x30 && b[i] <= 0x39 {
        fraction += Double(b[i] - 0x30) * scale
        scale /= 10
        i += 1
      }
    }
    var offset = 0
    guard i < b.count else { return nil }
    if b[i] == UInt8(ascii: "Z") || b[i] == UInt8(ascii: "z") {
      i += 1
    } else if b[i] == UInt8(ascii: "+") || b[i] == UInt8(ascii: "-") {
      guard let oh = number((i + 1)..<(i + 3)), i + 3 < b.count, b[i + 3] == UInt8(ascii: ":"), let om = number((i + 4)..<(i + 6)) else { return nil }
      offset = (oh * 60 + om) * 60 * (b[i] == UInt8(ascii: "-") ? -1 : 1)
      i += 6
    } else {
      return nil
    }
    guard i == b.count else { return nil }
    var parts = tm()
    parts.tm_year = Int32(year - 1900)
    parts.tm_mon = Int32(month - 1)
    parts.tm_mday = Int32(day)
    parts.tm_hour = Int32(hour)
    parts.tm_min = Int32(minute)
    parts.tm_sec = Int32(second)
    return Double(timegm(&parts) - offset) + fraction
  }

  static func wallNow() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_REALTIME, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
  }
}
