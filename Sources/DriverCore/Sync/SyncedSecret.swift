/// One Kubernetes Secret that `spec.secretObjects` asks for, built from what was mounted.
public struct SyncedSecret: Sendable, Equatable {
  public var namespace: String
  public var name: String
  public var type: String
  public var labels: [String: String]
  public var annotations: [String: String]
  public var data: [String: [UInt8]]

  public static let managedLabel = "secrets-store.csi.k8s.io/managed"
  public static let tlsType = "kubernetes.io/tls"

  /// The Secrets of a class's `secretObjects` for a pod in `namespace`, from the mounted
  /// files (object name → bytes). Fails naming the secret and object when an object the
  /// class names was not mounted, or a TLS object lacks its certificate or key.
  public static func build(
    _ specs: [SecretProviderClass.SecretObject], namespace: String, files: [String: [UInt8]]
  ) throws(SyncError) -> [SyncedSecret] {
    try specs.map { (spec) throws(SyncError) -> SyncedSecret in
      let type = spec.type.isEmpty ? "Opaque" : spec.type
      var data: [String: [UInt8]] = [:]
      for item in spec.data {
        guard let content = files[item.objectName] else {
          throw SyncError("secretObjects \(spec.secretName): object \"\(item.objectName)\" is not among the mounted objects")
        }
        if type == tlsType && (item.key == "tls.key" || item.key == "tls.crt") {
          let part = item.key == "tls.key" ? PEM.privateKeys(in: content) : PEM.certificates(in: content)
          guard !part.isEmpty else {
            throw SyncError("secretObjects \(spec.secretName): object \"\(item.objectName)\" holds no \(item.key == "tls.key" ? "private key" : "certificate") in PEM form")
          }
          data[item.key] = part
        } else {
          data[item.key] = content
        }
      }
      var labels = spec.labels
      labels[managedLabel] = "true"
      return SyncedSecret(namespace: namespace, name: spec.secretName, type: type, labels: labels, annotations: spec.annotations, data: data)
    }
  }
}

/// Why a Secret could not be synced; names secrets and objects, never their bytes.
public struct SyncError: Error, Sendable, CustomStringConvertible {
  public var message: String
  public init(_ message: String) { self.message = message }
  public var description: String { message }
}

/// PEM blocks (`-----BEGIN <type>-----` ... `-----END <type>-----`): a provider often
/// returns a certificate chain and its key in one object; a TLS Secret wants them apart.
enum PEM {
  struct Block {
    var type: String
    var bytes: ArraySlice<UInt8>
  }

  static func blocks(in content: [UInt8]) -> [Block] {
    let begin = Array("-----BEGIN ".utf8)
    let end = Array("-----END ".utf8)
    let dashes = Array("-----".utf8)
    var out: [Block] = []
    var i = 0
    while let start = find(begin, in: content, from: i) {
      let typeStart = start + begin.count
      guard let typeEnd = find(dashes, in: content, from: typeStart) else { break }
      let type = String(decoding: content[typeStart..<typeEnd], as: UTF8.self)
      let endMarker = end + Array(type.utf8) + dashes
      guard let close = find(endMarker, in: content, from: typeEnd) else { break }
      var stop = close + endMarker.count
      if stop < content.count, content[stop] == 0x0D { stop += 1 }
      if stop < content.count, content[stop] == 0x0A { stop += 1 }
      out.append(Block(type: type, bytes: content[start..<stop]))
      i = stop
    }
    return out
  }

  /// Every CERTIFICATE block, in order (leaf first, as providers return chains).
  static func certificates(in content: [UInt8]) -> [UInt8] {
    join(blocks(in: content).filter { $0.type == "CERTIFICATE" })
  }

  /// The private key block(s): `PRIVATE KEY`, `RSA PRIVATE KEY`, `EC PRIVATE KEY`, ...
  static func privateKeys(in content: [UInt8]) -> [UInt8] {
    join(blocks(in: content).filter { $0.type.hasSuffix("PRIVATE KEY") })
  }

  private static func join(_ blocks: [Block]) -> [UInt8] {
    var out: [UInt8] = []
    for block in blocks {
      out += block.bytes
      if out.last != 0x0A { out.append(0x0A) }
    }
    return out
  }

  private static func find(_ needle: [UInt8], in haystack: [UInt8], from: Int) -> Int? {
    guard needle.count <= haystack.count, from <= haystack.count - needle.count else { return nil }
    var i = from
    while i <= haystack.count - needle.count {
      if haystack[i] == needle[0] && haystack[i..<(i + needle.count)].elementsEqual(needle) { return i }
      i += 1
    }
    return nil
  }
}
