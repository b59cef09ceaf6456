public import CSIMessages
import TextFormats

/// Makes foreign text (a provider's gRPC status message or MountResponse error
/// code, a file name it returned, a decoder's or parser's complaint) safe to
/// put into a log line, a kubelet event or a gRPC status: every secret the
/// driver knows for the call is replaced by ``marker``, control characters are
/// replaced, and the result is cut to a bounded length.
///
/// The rule for what is recognised, and why:
/// - A known secret shorter than ``minimumSecretBytes`` (4) is not looked for:
///   it would turn every "a", "io" or "eu" in the text into a marker, and
///   three bytes are no secret worth the name.
/// - Every secret of 4 bytes or more is found as it is, JSON-escaped (with and
///   without Go's HTML escaping, and escaped twice, as in a JSON document
///   quoted inside another), as lower-case hex and as base64 (standard and
///   URL alphabets, unpadded, from any starting offset); secrets over 64 KiB
///   (file contents) only as they are.
/// - A form shorter than ``wordBoundaryBelowBytes`` (8) counts only where it is
///   a whole word (no ASCII letter, digit or `_` right before or after it), so
///   a username "admin" does not turn "administrator" into "[redacted]istrator".
/// - Every run of ``fragmentBytes`` (16) or more bytes that also occurs inside
///   one of those forms is replaced too: a provider that cuts a token short in
///   its message, or embeds it in a longer encoded blob, still leaks nothing
///   beyond fragments shorter than that.
/// - Matches may overlap or touch; each maximal redacted run becomes one marker.
/// - Control characters (Unicode Cc, Cf such as bidi overrides, and the line and
///   paragraph separators) become spaces. They are replaced, never deleted, and
///   only after secrets are found, so removing them cannot join the halves of a
///   split secret back together.
/// - The result is at most `limitBytes` of UTF-8, cut at a character boundary,
///   with "…" when cut. Text longer than ``maxInputBytes`` is cut before the
///   search and loses its last `fragmentBytes - 1` bytes after it, so a secret
///   cut in two there is either found by a fragment or entirely dropped.
///
/// Without known secrets (a Version call carries none of ours), `credentialShapes`
/// also redacts credential-shaped runs: 20 or more bytes of the base64, base64url
/// and JWT alphabet with both letters and digits.
///
/// Building a scrubber is cheap (it keeps references to the call's maps); the
/// work happens in ``scrub(_:limitBytes:)``, which only error paths call.
public struct SecretScrubber: Sendable {
  public static let marker = "[redacted]"
  public static let minimumSecretBytes = 4
  public static let wordBoundaryBelowBytes = 8
  public static let fragmentBytes = 16
  /// Room for one line of a kubelet event; long enough for a useful reason.
  public static let defaultLimitBytes = 512
  public static let maxInputBytes = 64 << 10
  /// Larger secrets (file contents) are looked for as they are only: an
  /// error path must not spend long on the loop encoding megabytes.
  static let maxEncodedSecretBytes = 64 << 10
  static let credentialShapeBytes = 20

  // The call's own values, kept by reference (building a scrubber allocates
  // nothing); read only when text is scrubbed.
  /// Every value is secret (a `secrets` map); the tokens key's JSON is read for its tokens.
  private var secretMap: [String: String] = [:]
  /// Values are secret unless their key is in ``PodVolume/safeContextKeys`` (volume_context, attributes).
  private var contextMap: [String: String] = [:]
  /// SecretProviderClass parameters: every value is secret.
  private var parameters: [String: String] = [:]
  private var files: [Provider.File] = []
  private var strings: [String] = []
  private var binary: [[UInt8]] = []
  private var credentialShapes = false

  /// A scrubber that knows `secrets`; with none it still strips control characters and bounds the text.
  public init(secrets: [String] = [], binary: [[UInt8]] = [], credentialShapes: Bool = false) {
    self.strings = secrets
    self.binary = binary
    self.credentialShapes = credentialShapes
  }

  /// Everything secret a NodePublishVolume request carries: the values of its
  /// `secrets` map (nodePublishSecretRef), the service-account tokens (from
  /// either map) and the values of volume_context keys not known to be safe.
  public init(publishing request: CSI.NodePublishVolumeRequest) {
    secretMap = request.secrets
    contextMap = request.volumeContext
  }

  /// For tools that hold a provider MountRequest's maps: `secrets` values are
  /// secret, `attributes` values are unless their key is known to be safe.
  public init(secrets: [String: String], attributes: [String: String]) {
    secretMap = secrets
    contextMap = attributes
  }

  /// For text from a caller that carried none of our secrets: no known
  /// secrets, credential-shaped runs redacted.
  public static let unknownSecrets = SecretScrubber(credentialShapes: true)

  public func adding(secrets more: some Sequence<String>) -> SecretScrubber {
    var copy = self
    copy.strings.append(contentsOf: more)
    return copy
  }

  public func adding(binary more: some Sequence<[UInt8]>) -> SecretScrubber {
    var copy = self
    copy.binary.append(contentsOf: more)
    return copy
  }

  /// The values of a SecretProviderClass's `spec.parameters`.
  public func adding(parameters: [String: String]) -> SecretScrubber {
    var copy = self
    copy.parameters = parameters
    return copy
  }

  /// The contents of files a provider returned.
  public func adding(files: [Provider.File]) -> SecretScrubber {
    var copy = self
    copy.files = files
    return copy
  }

  /// `text`, safe to log and to return: see the type's rule.
  public func scrub(_ text: String, limitBytes: Int = defaultLimitBytes) -> String {
    scrub(bytes: Array(text.utf8), limitBytes: limitBytes)
  }

  public func scrub(bytes input: [UInt8], limitBytes: Int = defaultLimitBytes) -> String {
    if !credentialShapes && secretMap.isEmpty && contextMap.isEmpty && parameters.isEmpty && files.isEmpty && strings.isEmpty
      && binary.isEmpty
    {
      return Self.bounded(Self.withoutControls(String(decoding: input, as: UTF8.self)), limitBytes: limitBytes)
    }
    var text = input
    let cut = text.count > Self.maxInputBytes
    if cut { text.removeSubrange(Self.maxInputBytes...) }
    var mask = [Bool](repeating: false, count: text.count)
    let forms = Self.forms(of: secretAtoms())
    Self.markExact(forms.short, in: text, mask: &mask)
    Self.markFragments(forms.long, in: text, mask: &mask)
    if credentialShapes { Self.markCredentialShapes(in: text, mask: &mask) }
    if cut {
      // A secret cut in two here was found if at least a fragment of it is
      // left; a shorter piece lies in these last bytes, which go.
      let keep = text.count - (Self.fragmentBytes - 1)
      text.removeSubrange(keep...)
      mask.removeSubrange(keep...)
    }
    var out: [UInt8] = []
    out.reserveCapacity(min(text.count, limitBytes + 16))
    var i = 0
    while i < text.count {
      if mask[i] {
        out.append(contentsOf: Self.marker.utf8)
        while i < text.count && mask[i] { i += 1 }
      } else {
        out.append(text[i])
        i += 1
      }
    }
    if cut { out.append(contentsOf: "…".utf8) }
    return Self.bounded(Self.withoutControls(String(decoding: out, as: UTF8.self)), limitBytes: limitBytes)
  }

  // MARK: what is secret

  /// Every secret this scrubber knows, as bytes, at least ``minimumSecretBytes`` long.
  func secretAtoms() -> [[UInt8]] {
    var atoms: [[UInt8]] = []
    func add(_ s: String) { atoms.append(Array(s.utf8)) }
    func addMapValue(key: String, value: String) {
      if key == PodVolume.tokensKey, let tokens = Self.tokens(inTokensJSON: value), !tokens.isEmpty {
        tokens.forEach(add)
      } else {
        add(value)
      }
    }
    for (key, value) in secretMap { addMapValue(key: key, value: value) }
    for (key, value) in contextMap where !PodVolume.safeContextKeys.contains(key) { addMapValue(key: key, value: value) }
    parameters.values.forEach(add)
    strings.forEach(add)
    atoms.append(contentsOf: binary)
    atoms.append(contentsOf: files.map(\.contents))
    return atoms.filter { $0.count >= Self.minimumSecretBytes }
  }

  /// The `token` strings of kubelet's `csi.storage.k8s.io/serviceAccount.tokens`
  /// JSON (`{"<audience>": {"token": "...", "expirationTimestamp": "..."}}`); nil
  /// when it is not JSON of that shape, so the caller treats the whole value as secret.
  static func tokens(inTokensJSON json: String) -> [String]? {
    var tokens: [String] = []
    var scanner = JSONStrings(Array(json.utf8))
    var previous: (text: String, isKey: Bool)?
    while let literal = scanner.next() {
      guard let decoded = literal.text else { return nil }
      if literal.isValue, let previous, previous.isKey, previous.text == "token" {
        tokens.append(decoded)
      }
      previous = (decoded, literal.isKey)
    }
    return scanner.failed ? nil : tokens
  }

  // MARK: forms

  struct Forms {
    /// Shorter than ``fragmentBytes``: found whole.
    var short: [[UInt8]] = []
    /// Found by any ``fragmentBytes``-long run.
    var long: [[UInt8]] = []
  }

  static func forms(of atoms: [[UInt8]]) -> Forms {
    var seen: Set<[UInt8]> = []
    var forms = Forms()
    func add(_ form: [UInt8]) {
      guard form.count >= minimumSecretBytes, seen.insert(form).inserted else { return }
      if form.count < fragmentBytes { forms.short.append(form) } else { forms.long.append(form) }
    }
    for atom in atoms {
      add(atom)
      guard atom.count <= maxEncodedSecretBytes else { continue }
      let string = String(decoding: atom, as: UTF8.self)
      for htmlSafe in [true, false] {
        let once = jsonEscaped(string, htmlSafe: htmlSafe)
        add(once)
        add(jsonEscaped(String(decoding: once, as: UTF8.self), htmlSafe: htmlSafe))
      }
      add(hex(atom))
      for alphabet in [base64Standard, base64URL] {
        add(base64(atom[...], alphabet: alphabet, partialTail: true))
        // From each offset, the whole groups: what the atom looks like inside a
        // longer base64 text, wherever it starts.
        if atom.count >= wordBoundaryBelowBytes {
          for offset in 0..<3 {
            let whole = (atom.count - offset) / 3 * 3
            add(base64(atom[offset..<(offset + whole)], alphabet: alphabet, partialTail: false))
          }
        }
      }
    }
    return forms
  }

  static func jsonEscaped(_ s: String, htmlSafe: Bool) -> [UInt8] {
    var out: [UInt8] = []
    JSONText.appendString(s, to: &out, htmlSafe: htmlSafe)
    return Array(out.dropFirst().dropLast())
  }

  private static let hexDigits = Array("0123456789abcdef".utf8)
  private static let base64Standard = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)
  private static let base64URL = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_".utf8)

  static func hex(_ bytes: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    out.reserveCapacity(bytes.count * 2)
    for b in bytes {
      out.append(hexDigits[Int(b >> 4)])
      out.append(hexDigits[Int(b & 0xF)])
    }
    return out
  }

  /// Unpadded base64; `partialTail` encodes a last incomplete group as far as its bits are known.
  static func base64(_ bytes: ArraySlice<UInt8>, alphabet: [UInt8], partialTail: Bool) -> [UInt8] {
    var out: [UInt8] = []
    var i = bytes.startIndex
    while i + 3 <= bytes.endIndex {
      let n = UInt32(bytes[i]) << 16 | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2])
      for shift in [18, 12, 6, 0] { out.append(alphabet[Int((n >> UInt32(shift)) & 63)]) }
      i += 3
    }
    let rest = bytes.endIndex - i
    if partialTail && rest > 0 {
      let n = UInt32(bytes[i]) << 16 | (rest == 2 ? UInt32(bytes[i + 1]) << 8 : 0)
      for shift in [18, 12, 6].prefix(rest + 1) { out.append(alphabet[Int((n >> UInt32(shift)) & 63)]) }
    }
    return out
  }

  // MARK: finding

  private static func isWordByte(_ b: UInt8) -> Bool {
    (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5A) || (b >= 0x61 && b <= 0x7A) || b == 0x5F
  }

  static func markExact(_ forms: [[UInt8]], in text: [UInt8], mask: inout [Bool]) {
    for form in forms where form.count <= text.count {
      let wholeWord = form.count < wordBoundaryBelowBytes
      let first = form[0]
      var i = 0
      while i + form.count <= text.count {
        if text[i] == first, text[i..<(i + form.count)].elementsEqual(form),
          !wholeWord || ((i == 0 || !isWordByte(text[i - 1])) && (i + form.count == text.count || !isWordByte(text[i + form.count])))
        {
          for j in i..<(i + form.count) { mask[j] = true }
        }
        i += 1
      }
    }
  }

  /// Marks every ``fragmentBytes``-long run of `text` that occurs in one of
  /// `forms`: a rolling hash of the text's windows, probed with each form's windows.
  /// Equal windows of the text share one entry, compared once and marked once, so
  /// repetitive text and secrets ("aaaa…") cost no more than varied ones: otherwise every
  /// window of the form met every position of the text, quadratic in the two (found by
  /// profiling the FuzzVolumeContext fuzz target: about a third of its CPU time was here).
  static func markFragments(_ forms: [[UInt8]], in text: [UInt8], mask: inout [Bool]) {
    let k = fragmentBytes
    guard !forms.isEmpty, text.count >= k else { return }
    /// The text's windows with the same bytes: where they start, and whether marked yet.
    struct Window {
      var starts: [Int]
      var marked = false
    }
    var windows: [Window] = []
    var byHash: [UInt64: [Int]] = [:]
    rollingHashes(text[...]) { start, hash in
      let same = byHash[hash]?.first { text[windows[$0].starts[0]..<(windows[$0].starts[0] + k)].elementsEqual(text[start..<(start + k)]) }
      if let same {
        windows[same].starts.append(start)
      } else {
        byHash[hash, default: []].append(windows.count)
        windows.append(Window(starts: [start]))
      }
    }
    for form in forms {
      rollingHashes(form[...]) { start, hash in
        guard let candidates = byHash[hash] else { return }
        for w in candidates where !windows[w].marked {
          let first = windows[w].starts[0]
          guard text[first..<(first + k)].elementsEqual(form[start..<(start + k)]) else { continue }
          windows[w].marked = true
          for p in windows[w].starts {
            for j in p..<(p + k) { mask[j] = true }
          }
        }
      }
    }
  }

  private static let hashBase: UInt64 = 0x100_0000_01b3
  private static let hashBaseToK: UInt64 = {
    var power: UInt64 = 1
    for _ in 0..<fragmentBytes { power = power &* hashBase }
    return power
  }()

  /// Calls `body` with the start and polynomial hash of every ``fragmentBytes``-long window.
  private static func rollingHashes(_ bytes: ArraySlice<UInt8>, _ body: (Int, UInt64) -> Void) {
    let k = fragmentBytes
    guard bytes.count >= k else { return }
    var hash: UInt64 = 0
    var i = bytes.startIndex
    while i < bytes.endIndex {
      hash = hash &* hashBase &+ UInt64(bytes[i]) &+ 1
      if i - bytes.startIndex >= k {
        hash = hash &- (UInt64(bytes[i - k]) &+ 1) &* hashBaseToK
      }
      if i - bytes.startIndex >= k - 1 { body(i - k + 1 - bytes.startIndex, hash) }
      i += 1
    }
  }

  /// Runs of ``credentialShapeBytes`` or more bytes of `[A-Za-z0-9+/=_.-]` that hold a letter and a digit.
  static func markCredentialShapes(in text: [UInt8], mask: inout [Bool]) {
    func inAlphabet(_ b: UInt8) -> Bool {
      isWordByte(b) || b == UInt8(ascii: "+") || b == UInt8(ascii: "/") || b == UInt8(ascii: "=")
        || b == UInt8(ascii: ".") || b == UInt8(ascii: "-")
    }
    var i = 0
    while i < text.count {
      guard inAlphabet(text[i]) else {
        i += 1
        continue
      }
      var j = i
      var letter = false
      var digit = false
      while j < text.count && inAlphabet(text[j]) {
        let b = text[j]
        if b >= 0x30 && b <= 0x39 { digit = true } else if (b | 0x20) >= 0x61 && (b | 0x20) <= 0x7A { letter = true }
        j += 1
      }
      if j - i >= credentialShapeBytes && letter && digit {
        for m in i..<j { mask[m] = true }
      }
      i = j
    }
  }

  // MARK: shaping

  /// Control characters (Cc), format characters (Cf: bidi overrides, zero
  /// widths) and line/paragraph separators become spaces.
  static func withoutControls(_ s: String) -> String {
    guard s.unicodeScalars.contains(where: isControl) else { return s }
    var out = String.UnicodeScalarView()
    for scalar in s.unicodeScalars {
      out.append(isControl(scalar) ? " " : scalar)
    }
    return String(out)
  }

  private static func isControl(_ scalar: Unicode.Scalar) -> Bool {
    if scalar.value < 0x20 || scalar.value == 0x7F { return true }
    if scalar.isASCII { return false }
    switch scalar.properties.generalCategory {
    case .control, .format, .lineSeparator, .paragraphSeparator: return true
    default: return false
    }
  }

  /// At most `limitBytes` of UTF-8, cut at a scalar boundary, "…" when cut.
  static func bounded(_ s: String, limitBytes: Int) -> String {
    guard s.utf8.count > limitBytes else { return s }
    let ellipsis = "…"
    let budget = max(0, limitBytes - ellipsis.utf8.count)
    var end = s.unicodeScalars.startIndex
    var used = 0
    for index in s.unicodeScalars.indices {
      let size = UTF8.width(s.unicodeScalars[index])
      if used + size > budget { break }
      used += size
      end = s.unicodeScalars.index(after: index)
    }
    return String(s.unicodeScalars[..<end]) + ellipsis
  }
}

/// Walks the string literals of a JSON text, saying for each whether it is an
/// object key or a value. Only what ``SecretScrubber/tokens(inTokensJSON:)`` needs.
struct JSONStrings {
  struct Literal {
    /// Nil when an escape in it is malformed.
    var text: String?
    var isKey: Bool
    var isValue: Bool
  }

  private let bytes: [UInt8]
  private var i = 0
  private(set) var failed = false

  init(_ bytes: [UInt8]) {
    self.bytes = bytes
  }

  mutating func next() -> Literal? {
    var afterColon = false
    while i < bytes.count {
      let b = bytes[i]
      if b == UInt8(ascii: "\"") {
        guard let (text, end) = readString(from: i + 1) else {
          failed = true
          return nil
        }
        i = end
        var j = i
        while j < bytes.count, bytes[j] == 0x20 || bytes[j] == 0x0A || bytes[j] == 0x0D || bytes[j] == 0x09 { j += 1 }
        let isKey = j < bytes.count && bytes[j] == UInt8(ascii: ":")
        return Literal(text: text, isKey: isKey, isValue: afterColon)
      }
      if b == UInt8(ascii: ":") {
        afterColon = true
      } else if b != 0x20 && b != 0x0A && b != 0x0D && b != 0x09 {
        afterColon = false
      }
      i += 1
    }
    return nil
  }

  /// The decoded literal starting after its opening quote, and the index after its closing quote.
  private func readString(from start: Int) -> (String?, Int)? {
    var out: [UInt8] = []
    var j = start
    var valid = true
    while j < bytes.count {
      let b = bytes[j]
      if b == UInt8(ascii: "\"") { return (valid ? String(decoding: out, as: UTF8.self) : nil, j + 1) }
      if b != UInt8(ascii: "\\") {
        out.append(b)
        j += 1
        continue
      }
      guard j + 1 < bytes.count else { return nil }
      let e = bytes[j + 1]
      j += 2
      switch e {
      case UInt8(ascii: "n"): out.append(0x0A)
      case UInt8(ascii: "t"): out.append(0x09)
      case UInt8(ascii: "r"): out.append(0x0D)
      case UInt8(ascii: "b"): out.append(0x08)
      case UInt8(ascii: "f"): out.append(0x0C)
      case UInt8(ascii: "u"):
        guard j + 4 <= bytes.count, let unit = UInt16(String(decoding: bytes[j..<(j + 4)], as: UTF8.self), radix: 16) else {
          return nil
        }
        j += 4
        var units = [unit]
        if UTF16.isLeadSurrogate(unit), j + 6 <= bytes.count, bytes[j] == UInt8(ascii: "\\"), bytes[j + 1] == UInt8(ascii: "u"),
          let trail = UInt16(String(decoding: bytes[(j + 2)..<(j + 6)], as: UTF8.self), radix: 16)
        {
          units.append(trail)
          j += 6
        }
        let decoded = String(decoding: units, as: UTF16.self)
        if decoded.unicodeScalars.contains("\u{FFFD}") && unit != 0xFFFD { valid = false }
        out.append(contentsOf: decoded.utf8)
      default: out.append(e)  // \" \\ \/
      }
    }
    return nil
  }
}
