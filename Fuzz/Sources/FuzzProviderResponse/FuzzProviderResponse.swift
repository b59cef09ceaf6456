// A provider's MountResponse as the driver handles it before writing anything: the error
// code and object versions, every file's mode (VolumeActor.check), then every path, mode,
// duplicate and file/directory clash (the atomic writer's plan, built without touching the
// disk). What passes must be safe to write under the volume: relative, clean, confined.
import CSIMessages
@testable import DriverCore
@testable import VolumeFiles

func confined(_ path: String) -> Bool {
  let elements = path.utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false)
  return !path.isEmpty && !path.hasPrefix("/") && !path.utf8.contains(0) && path.utf8.count <= PathRules.maxPathBytes
    && elements.allSatisfy { !$0.isEmpty && !$0.starts(with: Array("..".utf8)) && !$0.elementsEqual(Array(".".utf8)) }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
  guard let response = try? Provider.MountResponse(serializedBytes: UnsafeRawBufferPointer(start: data, count: size)) else {
    return 0
  }
  let scrubber = SecretScrubber(secrets: ["fuzz-token-value"]).adding(files: response.files)
  let files: [SecretFile]
  do {
    files = try VolumeActor.check(response, provider: "fuzz", scrubber: scrubber)
  } catch {
    _ = error.description
    return 0
  }
  let plan: Plan
  do {
    plan = try Plan(files, defaultMode: MountRequestBuilder.defaultFileMode)
  } catch {
    _ = "\(error)"
    return 0
  }
  // By bytes, as the disk sees names (Swift's String equality is canonical equivalence).
  var seen = Set<[UInt8]>()
  for file in plan.files {
    guard confined(file.path), PathRules.isValid(file.path) else { fatalError("unsafe path passed: \(file.path.debugDescription)") }
    guard file.mode <= 0o7777, file.mode != 0 else { fatalError("mode \(file.mode) passed for \(file.path.debugDescription)") }
    guard file.key == Array(file.path.utf8), seen.insert(file.key).inserted else {
      fatalError("duplicate path passed: \(file.path.debugDescription)")
    }
  }
  for file in plan.files {
    var prefix: [UInt8] = []
    for directory in file.directories {
      prefix += prefix.isEmpty ? directory : [UInt8(ascii: "/")] + directory
      guard !seen.contains(prefix) else { fatalError("\(file.path.debugDescription): a parent is also a file") }
    }
  }
  return 0
}
