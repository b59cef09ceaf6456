import KubeClient

/// Comparing and merging objects as the operator needs to: the server adds defaults to
/// what it stores, so "up to date" means the desired object is contained in the live one.
enum JSONTree {
  /// True when every field of `desired` is in `live` with the same value: objects
  /// may have more keys, arrays must have as many elements, each contained in turn.
  static func contains(_ live: JSONValue?, _ desired: JSONValue) -> Bool {
    switch desired {
    case .object(let d):
      guard case .object(let l)? = live else { return d.isEmpty && (live == nil || live == .null) }
      for (key, value) in d where !contains(l[key], value) { return false }
      return true
    case .array(let d):
      guard case .array(let l)? = live else { return d.isEmpty && (live == nil || live == .null) }
      guard l.count == d.count else { return false }
      return zip(l, d).allSatisfy { contains($0, $1) }
    case .null:
      return live == nil || live == .null
    case .int(let i):
      if case .double(let x)? = live { return x == Double(i) }
      return live == desired
    case .double(let x):
      if case .int(let i)? = live { return x == Double(i) }
      return live == desired
    default:
      return live == desired
    }
  }

  /// `live` with `desired` written over it: every top-level field but metadata and
  /// status replaced whole (a field the operator no longer wants goes), labels and
  /// annotations merged (desired wins), owner references added.
  static func merge(live: JSONValue, desired: JSONValue) -> JSONValue {
    guard case .object(var out) = live, case .object(let d) = desired else { return desired }
    for (key, value) in d where key != "metadata" && key != "status" { out[key] = value }
    var meta = live["metadata"]?.object ?? [:]
    let want = desired["metadata"]?.object ?? [:]
    for field in ["labels", "annotations"] {
      var merged = meta[field]?.object ?? [:]
      for (k, v) in want[field]?.object ?? [:] { merged[k] = v }
      if !merged.isEmpty { meta[field] = .object(merged) }
    }
    if let refs = want["ownerReferences"]?.array {
      var have = meta["ownerReferences"]?.array ?? []
      for ref in refs where !have.contains(where: { $0["uid"] == ref["uid"] }) {
        var ref = ref
        // An object another controller already controls (adopted from elsewhere): the
        // API server allows one controller reference, so ours only owns it.
        if have.contains(where: { $0["controller"] == .bool(true) }) { ref["controller"] = .bool(false) }
        have.append(ref)
      }
      meta["ownerReferences"] = .array(have)
    }
    out["metadata"] = .object(meta)
    return .object(out)
  }

  /// Is the live object's metadata what the operator wants (labels, annotations and
  /// owner references present; anything else the server or others added is fine)?
  static func metadataContains(_ live: JSONValue, _ desired: JSONValue) -> Bool {
    let l = live["metadata"], d = desired["metadata"]
    for field in ["labels", "annotations"] {
      for (k, v) in d?[field]?.object ?? [:] where l?[field]?[k] != v { return false }
    }
    let have = l?["ownerReferences"]?.array ?? []
    for ref in d?["ownerReferences"]?.array ?? [] where !have.contains(where: { $0["uid"] == ref["uid"] }) { return false }
    return true
  }

  /// Up to date: metadata as above, and every other field contained.
  static func upToDate(live: JSONValue, desired: JSONValue) -> Bool {
    guard metadataContains(live, desired), case .object(let d) = desired else { return false }
    for (key, value) in d where key != "metadata" && key != "status" && key != "apiVersion" && key != "kind" {
      if !contains(live[key], value) { return false }
    }
    return true
  }
}

extension JSONValue {
  var int: Int64? {
    switch self {
    case .int(let i): return i
    case .double(let d) where d == d.rounded(): return Int64(d)
    default: return nil
    }
  }

  var bool: Bool? {
    if case .bool(let b) = self { return b }
    return nil
  }
}
