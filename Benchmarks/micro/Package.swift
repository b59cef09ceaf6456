// swift-tools-version:6.1
// Micro-benchmarks of the driver's hot paths (package-benchmark). A package of its own so that
// the driver's build and `make test` never compile the benchmark machinery; `make micro-bench`
// runs them and `make micro-bench-check` compares them with Thresholds/.
import PackageDescription

let settings: [SwiftSetting] = [
  .swiftLanguageMode(.v6),
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("InternalImportsByDefault"),
  .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
  name: "micro-benchmarks",
  dependencies: [
    // Named, because a path dependency is otherwise known by its directory name (a clone or
    // worktree may be called anything).
    .package(name: "secrets-store-csi-driver-swift", path: "../.."),
    // MallocInterposer: the malloc counters without jemalloc (the trait list replaces the
    // defaults, which would also pull in a runtime interposer package this machine lacks).
    .package(url: "https://github.com/ordo-one/benchmark", exact: "1.38.1", traits: ["MallocInterposer"]),
    .package(url: "https://github.com/grpc/grpc-swift-2.git", exact: "2.4.3"),
  ],
  targets: [
    // Shared metrics and threshold tolerances.
    .target(
      name: "MicroSupport",
      dependencies: [.product(name: "Benchmark", package: "benchmark")],
      swiftSettings: settings
    ),
    // NodePublishVolumeRequest and MountResponse through protoc-c.
    benchmark("MessageBenchmarks", [.product(name: "CSIMessages", package: "secrets-store-csi-driver-swift")]),
    // Unary RPCs through GRPCCore over our HTTP/2 transport, in memory and on a unix socket.
    benchmark("TransportBenchmarks", [
      .product(name: "GRPCH2", package: "secrets-store-csi-driver-swift"),
      .product(name: "UVRuntime", package: "secrets-store-csi-driver-swift"),
      .product(name: "GRPCCore", package: "grpc-swift-2"),
    ]),
    // Path rules and the atomic `..data` writer on a tmpfs (needs root).
    benchmark("VolumeFilesBenchmarks", [.product(name: "VolumeFiles", package: "secrets-store-csi-driver-swift")]),
    // Hops between the global pool and the libuv loop.
    benchmark("ExecutorBenchmarks", [.product(name: "UVRuntime", package: "secrets-store-csi-driver-swift")]),
  ]
)

func benchmark(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
  .executableTarget(
    name: name,
    dependencies: ["MicroSupport", .product(name: "Benchmark", package: "benchmark")] + dependencies,
    path: "Benchmarks/\(name)",
    swiftSettings: settings,
    plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]
  )
}
