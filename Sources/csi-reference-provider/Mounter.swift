import CLinux
import CSIMessages
import FoundationEssentials
import GRPCCore
import Glibc

/// What a Mount call answers, decided before any waiting so the loop only sleeps.
struct MountOutcome: Sendable {
  enum Answer: Sendable {
    case response(Provider.MountResponse)
    case status(RPCError)
  }

  var answer: Answer
  /// The injected latency to wait before answering.
  var delayMs: UInt64
  /// nil on success; else the MountResponse error code or the gRPC status name.
  var errorLabel: String?
  /// Why it failed, for the log: never a value taken from the request.
  var reason: String?
  var hostile: HostileMode?
  var objectCount: Int
  /// `namespace/serviceAccount` from the request, for the per-identity call count.
  var identity: String? = nil
}

/// The Mount logic without I/O on the loop: attributes in, an outcome out.
/// Reads object files and draws random numbers, so it runs off the loop thread.
struct Mounter: Sendable {
  let defaults: FaultSettings
  let dataDir: DataDir?
  /// Monotonic start of the process, the origin of throttle windows.
  let startedMs: Double

  static func monotonicMs() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) * 1000 + Double(ts.tv_nsec) / 1_000_000
  }

  func evaluate(_ request: Provider.MountRequest) -> MountOutcome {
    var rng = SystemRandomNumberGenerator()
    guard let attributes = FlatJSON.stringObject(request.attributes) else {
      return failure(.invalid("attributes must be a JSON object of strings"), delay: defaults.latency, &rng)
    }
    var outcome = evaluate(attributes, &rng)
    outcome.identity = Self.identity(attributes)
    return outcome
  }

  private func evaluate(_ attributes: [String: String], _ rng: inout SystemRandomNumberGenerator) -> MountOutcome {
    let faults: FaultSettings
    do {
      faults = try defaults.overlaid(with: attributes)
    } catch {
      return failure(.invalid(error.description), delay: defaults.latency, &rng)
    }

    if faults.throttle.isThrottled(elapsedMs: Self.monotonicMs() - startedMs) {
      switch faults.throttleCode {
      case "RESOURCE_EXHAUSTED", "UNAVAILABLE":
        let code: RPCError.Code = faults.throttleCode == "UNAVAILABLE" ? .unavailable : .resourceExhausted
        return MountOutcome(
          answer: .status(RPCError(code: code, message: "throttled: too many requests")),
          delayMs: faults.latency.sampleMilliseconds(using: &rng), errorLabel: faults.throttleCode, reason: "inside a throttle window",
          objectCount: 0)
      default:
        return failure(MountFailure(code: faults.throttleCode, reason: "inside a throttle window"), delay: faults.latency, &rng)
      }
    }
    if faults.errorRate > 0 && Double.random(in: 0..<1, using: &rng) < faults.errorRate {
      let delay = faults.latency.sampleMilliseconds(using: &rng)
      switch faults.errorKind {
      case .response:
        return failure(MountFailure(code: "InjectedError", reason: "injected error"), delayMs: delay)
      case .unavailable:
        return MountOutcome(
          answer: .status(RPCError(code: .unavailable, message: "injected fault: unavailable")),
          delayMs: delay, errorLabel: "UNAVAILABLE", reason: "injected error", objectCount: 0)
      case .internal:
        return MountOutcome(
          answer: .status(RPCError(code: .internalError, message: "injected fault: internal")),
          delayMs: delay, errorLabel: "INTERNAL", reason: "injected error", objectCount: 0)
      case .resourceExhausted:
        return MountOutcome(
          answer: .status(RPCError(code: .resourceExhausted, message: "injected fault: rate limited")),
          delayMs: delay, errorLabel: "RESOURCE_EXHAUSTED", reason: "injected error", objectCount: 0)
      }
    }

    var response: Provider.MountResponse
    do {
      guard let objectsText = attributes[ObjectsParameter.key] else {
        throw MountFailure.invalid("the objects parameter is missing")
      }
      let specs = try ObjectsParameter.parseCached(objectsText)
      response = try build(specs)
    } catch let failure as MountFailure {
      return self.failure(failure, delay: faults.latency, &rng)
    } catch {
      return self.failure(MountFailure(code: "Internal", reason: "\(type(of: error))"), delay: faults.latency, &rng)
    }
    let objectCount = response.objectVersion.count
    var hostile = faults.hostile
    if hostile != nil, faults.hostileRate < 1, Double.random(in: 0..<1, using: &rng) >= faults.hostileRate {
      hostile = nil
    }
    if let hostile {
      Self.corrupt(&response, hostile)
    }
    return MountOutcome(
      answer: .response(response), delayMs: faults.latency.sampleMilliseconds(using: &rng),
      errorLabel: nil, reason: nil, hostile: hostile, objectCount: objectCount)
  }

  /// `namespace/serviceAccount` of the pod the call is for (the stats count calls per
  /// identity); nil when the request names neither.
  static func identity(_ attributes: [String: String]) -> String? {
    let ns = attributes["csi.storage.k8s.io/pod.namespace"], sa = attributes["csi.storage.k8s.io/serviceAccount.name"]
    if ns == nil && sa == nil { return nil }
    return "\(ns ?? "")/\(sa ?? "")"
  }

  private func failure(_ f: MountFailure, delay: Latency, _ rng: inout SystemRandomNumberGenerator) -> MountOutcome {
    failure(f, delayMs: delay.sampleMilliseconds(using: &rng))
  }

  private func failure(_ f: MountFailure, delayMs: UInt64) -> MountOutcome {
    // A failed mount carries no files, as the API expects.
    MountOutcome(
      answer: .response(Provider.MountResponse(error: Provider.MountError(code: f.code))),
      delayMs: delayMs, errorLabel: f.code, reason: f.reason, objectCount: 0)
  }

  func build(_ specs: [ObjectSpec]) throws(MountFailure) -> Provider.MountResponse {
    var response = Provider.MountResponse()
    response.files.reserveCapacity(specs.count)
    response.objectVersion.reserveCapacity(specs.count)
    for spec in specs {
      let contents: [UInt8]
      if let value = spec.value {
        contents = Array(value.utf8)
      } else if let dataDir {
        contents = try dataDir.contents(of: spec.name)
      } else {
        throw MountFailure(code: "ObjectNotFound", reason: "an object has no value and no --data-dir is set")
      }
      response.files.append(Provider.File(path: spec.path, mode: spec.mode, contents: contents))
      response.objectVersion.append(Provider.ObjectVersion(id: spec.name, version: ContentVersion.of(contents)))
    }
    return response
  }

  /// 8 MiB: twice the driver's default receive limit.
  static let oversizedContents = [UInt8](repeating: UInt8(ascii: "x"), count: 8 << 20)
  static let oversizedVersion = ContentVersion.of(oversizedContents)
  /// 32 MiB: twice the driver's tmpfs size.
  static let tmpfsFullContents = [UInt8](repeating: UInt8(ascii: "y"), count: 32 << 20)
  static let tmpfsFullVersion = ContentVersion.of(tmpfsFullContents)
  static let manyCount = 100_000
  /// 100 000 one-byte files at the top of the volume (names 0 to 99999, so the message
  /// stays under the driver's default 4 MiB limit while a page each overflows its tmpfs), built once.
  static let manyFiles: [Provider.File] = (0..<manyCount).map { i in
    Provider.File(path: "\(i)", mode: 0o644, contents: [UInt8(ascii: "m")])
  }

  /// The hostile mode `nul`'s file name: read up to the NUL, it would be a plain "evil".
  static let nulPath = "evil\u{0}/../../escape"

  /// Turns a good response into one the driver must reject, in the way `mode` names.
  static func corrupt(_ response: inout Provider.MountResponse, _ mode: HostileMode) {
    func add(_ path: String, mode: Int32 = 0o644, _ contents: [UInt8] = Array("hostile".utf8), version: String? = nil, id: String) {
      response.files.append(Provider.File(path: path, mode: mode, contents: contents))
      response.objectVersion.append(Provider.ObjectVersion(id: id, version: version ?? ContentVersion.of(contents)))
    }
    switch mode {
    case .dotdot: add("../escape", id: "escape")
    case .absolute: add("/etc/evil", id: "evil")
    case .reserved: add("..data", id: "reserved")
    case .oversized: add("oversized", oversizedContents, version: oversizedVersion, id: "oversized")
    case .badMode: add("bad-mode", mode: 0o170000, id: "bad-mode")
    case .emptyVersions:
      if response.files.isEmpty { add("unversioned", id: "unversioned") }
      response.objectVersion = []
    case .duplicate:
      if response.files.isEmpty { add("duplicate", id: "duplicate") }
      let first = response.files[0]
      response.files.append(Provider.File(path: first.path, mode: first.mode, contents: Array("duplicate".utf8)))
    // Strings go to protoc-c with their length (see scripts/gen-protos.sh), so the NUL
    // byte is on the wire as it is here.
    case .nul: add(nulPath, id: "nul")
    case .many:
      // One version for them all: the message must stay small enough to arrive.
      response.files.append(contentsOf: manyFiles)
      response.objectVersion.append(Provider.ObjectVersion(id: "many", version: ContentVersion.of([UInt8(ascii: "m")])))
    case .tmpfsFull: add("tmpfs-full", tmpfsFullContents, version: tmpfsFullVersion, id: "tmpfs-full")
    case .symlink: add("symlink", mode: 0o120777, Array("/etc/shadow".utf8), id: "symlink")
    case .throughLink:
      add("link", id: "link")
      add("link/inner", id: "link-inner")
    case .hugeMode: add("huge-mode", mode: Int32.max, id: "huge-mode")
    }
  }
}
