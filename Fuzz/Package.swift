// swift-tools-version:6.1
// libFuzzer targets for the driver's untrusted inputs. A package of its own, like
// Benchmarks/micro, so the driver's build and `make test` never compile with
// -sanitize=fuzzer; `make fuzz` and `make fuzz-smoke` build and run them (see README.md).
//
// Built with `-sanitize=fuzzer,address -enable-testing` for every module (the Makefile passes
// them): each target's `main` hands its `fuzzOneInput` to libFuzzer's driver, and
// `@testable import` reaches the driver's internal entry points (the checks the driver
// runs) without widening their access in the driver itself.
import PackageDescription

let settings: [SwiftSetting] = [
  .swiftLanguageMode(.v6),
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("InternalImportsByDefault"),
  .enableUpcomingFeature("MemberImportVisibility"),
]

let driver = "secrets-store-csi-driver-swift"

let package = Package(
  name: "fuzz",
  dependencies: [
    // Named, because a path dependency is otherwise known by its directory name.
    .package(name: driver, path: ".."),
    .package(url: "https://github.com/grpc/grpc-swift-2.git", exact: "2.4.3"),
    .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
  ],
  targets: [
    // libFuzzer's driver entry point, declared for Swift.
    .target(name: "CFuzzDriver"),
    // HTTP/2 + gRPC server input: bytes from a client into the driver's gRPC server.
    fuzzTarget("FuzzH2Server", [
      .product(name: "GRPCH2", package: driver), .product(name: "UVRuntime", package: driver),
      .product(name: "DriverCore", package: driver), .product(name: "CSIMessages", package: driver),
      .product(name: "GRPCCore", package: "grpc-swift-2"), .product(name: "Logging", package: "swift-log"),
    ]),
    // CSI and provider messages through protoc-c and back.
    fuzzTarget("FuzzMessages", [.product(name: "CSIMessages", package: driver), .product(name: "DriverCore", package: driver)]),
    // A provider's MountResponse through the driver's checks (no disk).
    fuzzTarget("FuzzProviderResponse", [
      .product(name: "CSIMessages", package: driver), .product(name: "DriverCore", package: driver),
      .product(name: "VolumeFiles", package: driver),
    ]),
    // SecretProviderClass YAML files (standalone mode's --spc-dir).
    fuzzTarget("FuzzSecretProviderClass", [.product(name: "DriverCore", package: driver), .product(name: "YAML", package: driver)]),
    // NodePublishVolume's volume_context and secrets: PodVolume, the tokens JSON, the provider request.
    fuzzTarget("FuzzVolumeContext", [.product(name: "CSIMessages", package: driver), .product(name: "DriverCore", package: driver)]),
    // Kubernetes API answers (objects, lists, watch lines, Status) and kubeconfig YAML.
    fuzzTarget("FuzzKubeJSON", [
      .product(name: "KubeClient", package: driver), .product(name: "YAML", package: driver),
      .product(name: "DriverCore", package: driver),
    ]),
  ]
)

func fuzzTarget(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
  .executableTarget(name: name, dependencies: ["CFuzzDriver"] + dependencies, path: "Sources/\(name)", swiftSettings: settings)
}
