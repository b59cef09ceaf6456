// swift-tools-version:6.1
import PackageDescription

/// This manifest's directory: the release driver's link order file is named by absolute path.
let packageDirectory = String(#filePath.dropLast("/Package.swift".count))

let strict: [SwiftSetting] = [
  .swiftLanguageMode(.v6),
  .enableUpcomingFeature("ExistentialAny"),
  .enableUpcomingFeature("InternalImportsByDefault"),
  .enableUpcomingFeature("MemberImportVisibility"),
]

let package = Package(
  name: "secrets-store-csi-driver-swift",
  products: [
    .executable(name: "secrets-store-csi-driver", targets: ["secrets-store-csi-driver"]),
    .executable(name: "secrets-store-csi-driver-operator", targets: ["secrets-store-csi-driver-operator"]),
    .executable(name: "csi-provider-call", targets: ["csi-provider-call"]),
    .executable(name: "csi-bench", targets: ["csi-bench"]),
    .executable(name: "csi-reference-provider", targets: ["csi-reference-provider"]),
    .executable(name: "csi-load", targets: ["csi-load"]),
    // Libraries for Benchmarks/micro and Fuzz, packages of their own that depend on this one by path.
    .library(name: "UVRuntime", targets: ["UVRuntime"]),
    .library(name: "GRPCH2", targets: ["GRPCH2"]),
    .library(name: "CSIMessages", targets: ["CSIMessages"]),
    .library(name: "VolumeFiles", targets: ["VolumeFiles"]),
    .library(name: "YAML", targets: ["YAML"]),
    .library(name: "KubeClient", targets: ["KubeClient"]),
    .library(name: "DriverCore", targets: ["DriverCore"]),
  ],
  dependencies: [
    .package(url: "https://github.com/grpc/grpc-swift-2.git", exact: "2.4.3"),
    .package(url: "https://github.com/apple/swift-argument-parser.git", exact: "1.8.2"),
    .package(url: "https://github.com/apple/swift-log.git", exact: "1.16.2"),
    .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", exact: "0.2.0"),
  ],
  targets: [
    // C shims: one per system library, plus Linux calls Glibc does not expose.
    .target(name: "CUV", linkerSettings: [.linkedLibrary("uv")]),
    .target(name: "CNGHTTP2", linkerSettings: [.linkedLibrary("nghttp2")]),
    .target(name: "CProtobufC", linkerSettings: [.linkedLibrary("protobuf-c")]),
    .target(name: "COpenSSL", linkerSettings: [.linkedLibrary("crypto")]),
    // libcurl is not linked: CCurl loads it (dlopen) on the first HTTP request.
    .target(name: "CCurl"),
    .target(name: "CLinux"),
    .target(name: "CYAML", linkerSettings: [.linkedLibrary("yaml")]),
    // What the driver executable sets up before any Swift code runs (malloc arenas).
    .target(name: "CDriverStartup"),
    // The version this build is, stamped by scripts/stamp-version.sh.
    .target(name: "CBuildInfo"),

    // Text formats every executable shares: Go durations (flags), klog and JSON log lines, JSON strings.
    .target(name: "TextFormats", swiftSettings: strict),
    // Runtime: the libuv loop as an executor, timers, signals, byte-stream transports.
    .target(name: "UVRuntime", dependencies: ["CUV"], swiftSettings: strict),
    // gRPC over HTTP/2 (nghttp2) as GRPCCore ServerTransport / ClientTransport.
    .target(
      name: "GRPCH2",
      dependencies: ["UVRuntime", "CNGHTTP2", .product(name: "GRPCCore", package: "grpc-swift-2")],
      swiftSettings: strict
    ),
    // CSI v1 and provider v1alpha1 messages: protoc-c underneath, Swift values on top.
    .target(
      name: "CSIMessages",
      dependencies: ["CProtobufC", .product(name: "GRPCCore", package: "grpc-swift-2")],
      swiftSettings: strict
    ),
    // The log handler of the executables: klog-like text or JSON lines on stderr.
    .target(
      name: "LogOutput", dependencies: ["TextFormats", .product(name: "Logging", package: "swift-log")], swiftSettings: strict),
    // YAML documents as trees (libyaml underneath): manifests, SecretProviderClass files, kubeconfig.
    .target(name: "YAML", dependencies: ["CYAML"], swiftSettings: strict),
    // Kubernetes API client: configuration, typed objects, verbs, watches, rate limits.
    // HTTP comes in through the KubeTransport protocol.
    .target(name: "KubeClient", dependencies: ["UVRuntime", "YAML", "CurlHTTP"], swiftSettings: strict),
    // Prometheus metrics (registry, text format) and the HTTP/1.1 GET responder that serves them.
    .target(name: "Telemetry", dependencies: ["UVRuntime"], swiftSettings: strict),
    // Volume contents on disk: path rules, the atomic `..data` writer, tmpfs mounts, and
    // `sys`, the wrapper every system call goes through.
    .target(name: "VolumeFiles", dependencies: ["CLinux"], swiftSettings: strict),
    // Outbound HTTP/1.1 and HTTP/2 (Kubernetes API, secret stores): libcurl's multi-socket API on a loop.
    .target(name: "CurlHTTP", dependencies: ["UVRuntime", "CCurl"], swiftSettings: strict),
    // The driver: CSI Identity and Node services, volumes, providers, configuration, logging.
    .target(
      name: "DriverCore",
      dependencies: [
        "UVRuntime", "GRPCH2", "CSIMessages", "CLinux", "CBuildInfo", "VolumeFiles", "TextFormats", "YAML", "KubeClient",
        "Telemetry",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: strict
    ),
    // The operator: one cluster resource reconciled into the driver's install (deploy/ compiled in).
    .target(
      name: "OperatorCore",
      dependencies: ["KubeClient", "YAML", "UVRuntime", "TextFormats", .product(name: "Logging", package: "swift-log")],
      swiftSettings: strict
    ),
    .executableTarget(
      name: "secrets-store-csi-driver-operator",
      dependencies: [
        "OperatorCore", "KubeClient", "CurlHTTP", "UVRuntime", "TextFormats", "LogOutput",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ],
      swiftSettings: strict
    ),
    .executableTarget(
      name: "secrets-store-csi-driver",
      dependencies: [
        "DriverCore", "KubeClient", "UVRuntime", "GRPCH2", "TextFormats", "VolumeFiles", "CDriverStartup", "LogOutput", "Telemetry",
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Logging", package: "swift-log"),
      ],
      exclude: ["hot-symbols.txt"],
      swiftSettings: strict,
      // Release only, each measured with 1 000 live volumes (docs/performance.md, "Resident size"):
      // - relative relocations packed (DT_RELR, glibc 2.36+; lld, as gold cannot): a
      //   position-independent executable carries one 24-byte relocation per pointer in its
      //   metadata, 1.1 MiB here, all read (and so resident) at every start; packed, 9 KiB;
      // - no dynamic export of every symbol (the static Swift runtime's link arguments ask
      //   for it; nothing loaded into this process resolves against it): 0.8 MiB of symbol
      //   table the loader kept touching;
      // - the functions a node's driver runs placed first, hottest first (hot-symbols.txt,
      //   `make hot-symbols`): the kernel maps code in 64 KiB neighbourhoods, and scattered
      //   among 11 MiB of code the 1.3 MiB that runs kept 7 MiB of it resident. Names the
      //   code no longer has are skipped.
      linkerSettings: [
        .unsafeFlags(
          [
            "-use-ld=lld", "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs", "-Xlinker", "--no-export-dynamic",
            "-Xlinker", "--symbol-ordering-file=\(packageDirectory)/Sources/secrets-store-csi-driver/hot-symbols.txt",
            "-Xlinker", "--no-warn-symbol-ordering",
          ],
          .when(configuration: .release))
      ]
    ),
    // Developer tool: calls a provider plugin with JSON commands (integration tests use it).
    .executableTarget(
      name: "csi-provider-call",
      dependencies: [
        "DriverCore", "CSIMessages", "GRPCH2", "UVRuntime", "TextFormats",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      swiftSettings: strict
    ),
    // Unary round-trip benchmark against a running driver (our client transport).
    .executableTarget(
      name: "csi-bench",
      dependencies: [
        "DriverCore", "CSIMessages", "GRPCH2", "UVRuntime",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      path: "Benchmarks/csi-bench",
      swiftSettings: strict
    ),
    // Load harness: simulates kubelet on one busy node against a driver and the reference provider.
    .executableTarget(
      name: "csi-load",
      dependencies: [
        "CSIMessages", "GRPCH2", "UVRuntime", "TextFormats", "CLinux",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
        .product(name: "Histogram", package: "hdrhistogram-swift"),
      ],
      path: "Benchmarks/csi-load",
      swiftSettings: strict
    ),
    // A provider plugin for demos, tests and the load harness: objects from files or
    // parameters, content-hash versions, and a fault/latency mode.
    .executableTarget(
      name: "csi-reference-provider",
      dependencies: [
        "CSIMessages", "GRPCH2", "UVRuntime", "VolumeFiles", "TextFormats", "COpenSSL", "CLinux",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "ArgumentParser", package: "swift-argument-parser"),
      ],
      swiftSettings: strict
    ),

    // The child process of the kill-at-every-step test of the atomic writer (VolumeFilesTests).
    .executableTarget(name: "writer-crash-child", dependencies: ["VolumeFiles"], path: "Tests/WriterCrashChild", swiftSettings: strict),

    .testTarget(name: "TextFormatsTests", dependencies: ["TextFormats"], swiftSettings: strict),
    .testTarget(name: "UVRuntimeTests", dependencies: ["UVRuntime"], swiftSettings: strict),
    .testTarget(
      name: "GRPCH2Tests",
      dependencies: ["GRPCH2", "UVRuntime", .product(name: "GRPCCore", package: "grpc-swift-2")],
      swiftSettings: strict
    ),
    .testTarget(
      name: "CurlHTTPTests", dependencies: ["CurlHTTP", "UVRuntime"], exclude: ["test_server.py"],
      swiftSettings: strict
    ),
    .testTarget(name: "VolumeFilesTests", dependencies: ["VolumeFiles", "CLinux"], swiftSettings: strict),
    .testTarget(name: "KubeClientTests", dependencies: ["KubeClient", "YAML"], swiftSettings: strict),
    .testTarget(name: "OperatorCoreTests", dependencies: ["OperatorCore", "KubeClient", "YAML", "UVRuntime", .product(name: "Logging", package: "swift-log")], swiftSettings: strict),
    .testTarget(name: "TelemetryTests", dependencies: ["Telemetry", "UVRuntime"], swiftSettings: strict),
    .testTarget(name: "YAMLTests", dependencies: ["YAML"], swiftSettings: strict),
    .testTarget(name: "CSIMessagesTests", dependencies: ["CSIMessages"], swiftSettings: strict),
    .testTarget(
      name: "DriverCoreTests",
      dependencies: [
        "DriverCore", "CSIMessages", "VolumeFiles", "UVRuntime", "GRPCH2", "CLinux", "COpenSSL",
        .product(name: "GRPCCore", package: "grpc-swift-2"),
        .product(name: "GRPCInProcessTransport", package: "grpc-swift-2"),
      ],
      swiftSettings: strict
    ),
  ]
)
