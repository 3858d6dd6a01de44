// swift-tools-version:6.3
// 6.3: StagepassVerifyC exports its C functions with `@c`, which needs the Swift 6.3 compiler.
import PackageDescription

let upcoming: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
]

// No `platforms`: Stagepass is built and run on Linux only (system libraries from Debian packages, see the Makefile);
// SwiftPM has no Linux version to declare.
let package = Package(
    name: "stagepass",
    products: [
        .executable(name: "stagepass", targets: ["stagepass"]),
        .library(name: "StagepassVerify", targets: ["StagepassVerify"]),
        .library(name: "StagepassVerifyC", type: .dynamic, targets: ["StagepassVerifyC"]),
        // Hummingbird middleware for deploy endpoints, and the forward-auth guard behind `stagepass guard`.
        .library(name: "StagepassHummingbird", targets: ["StagepassHummingbird"]),
    ],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/groue/GRDB.swift.git", from: "7.10.0"),
        .package(url: "https://github.com/apple/swift-argument-parser.git", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/jpsim/Yams.git", from: "6.2.2"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        // Already in the graph through Hummingbird; named here for the server's connection handlers.
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.3"),
        .package(url: "https://github.com/apple/swift-nio-extras.git", from: "1.35.2"),
        .package(url: "https://github.com/vapor/postgres-nio", from: "1.33.0"),
    ],
    targets: [
        // System libraries: one module map + a small shim header each.
        .systemLibrary(name: "COpenSSL", pkgConfig: "libcrypto", providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CJansson", pkgConfig: "jansson", providers: [.apt(["libjansson-dev"])]),
        .systemLibrary(name: "CArgon2", pkgConfig: "libargon2", providers: [.apt(["libargon2-dev"])]),
        .systemLibrary(name: "CZlib", pkgConfig: "zlib", providers: [.apt(["zlib1g-dev"])]),
        .systemLibrary(name: "CQRencode", pkgConfig: "libqrencode", providers: [.apt(["libqrencode-dev"])]),

        .target(
            name: "StagepassJOSE",
            dependencies: ["COpenSSL", "CJansson", "CZlib"],
            swiftSettings: upcoming
        ),
        .target(name: "StagepassVerify", dependencies: ["StagepassJOSE"], swiftSettings: upcoming),
        .target(
            name: "StagepassVerifyC",
            dependencies: ["StagepassVerify"],
            exclude: ["include"],
            swiftSettings: upcoming
        ),
        .target(
            name: "StagepassVerifyFetch",
            dependencies: ["StagepassVerify", "StagepassJOSE"],
            swiftSettings: upcoming
        ),
        .target(
            name: "StagepassHummingbird",
            dependencies: [
                "StagepassVerify", "StagepassVerifyFetch", "StagepassJOSE",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .target(
            name: "StagepassBroker",
            dependencies: [
                "StagepassJOSE", "StagepassVerify", "CArgon2", "CQRencode",
                .product(name: "GRDB", package: "GRDB.swift"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Yams", package: "Yams"),
            ],
            // Compiled into the module (no resource bundle to find at run time): `AccessPolicy.exampleYAML`.
            resources: [.embedInCode("Resources/example-policy.yaml")],
            swiftSettings: upcoming + [.enableUpcomingFeature("InternalImportsByDefault")]
        ),
        .target(
            name: "StagepassHTTP",
            dependencies: [
                "StagepassBroker", "StagepassJOSE", "StagepassVerify", "StagepassVerifyFetch",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
                .product(name: "HummingbirdCore", package: "hummingbird"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ],
            // Compiled into the binary: the pages need no resource bundle beside it.
            resources: [
                .embedInCode("Templates/app.css"),
                .embedInCode("Templates/app.js"),
                .embedInCode("Templates/approvals.mustache"),
                .embedInCode("Templates/approve.mustache"),
                .embedInCode("Templates/audit.mustache"),
                .embedInCode("Templates/delegations.mustache"),
                .embedInCode("Templates/factor.mustache"),
                .embedInCode("Templates/factors.mustache"),
                .embedInCode("Templates/home.mustache"),
                .embedInCode("Templates/keys.mustache"),
                .embedInCode("Templates/layout.mustache"),
                .embedInCode("Templates/message.mustache"),
                .embedInCode("Templates/revocations.mustache"),
                .embedInCode("Templates/signin.mustache"),
                .embedInCode("Templates/stepup.mustache"),
            ],
            swiftSettings: upcoming
        ),
        .executableTarget(
            name: "stagepass",
            dependencies: [
                "StagepassJOSE", "StagepassVerify", "StagepassVerifyFetch", "StagepassBroker", "StagepassHTTP",
                "StagepassHummingbird",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),

        .testTarget(name: "StagepassJOSETests", dependencies: ["StagepassJOSE"], swiftSettings: upcoming),
        .testTarget(
            name: "StagepassVerifyTests",
            dependencies: ["StagepassVerify", "StagepassJOSE", "StagepassVerifyFetch"],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "StagepassBrokerTests",
            dependencies: [
                "StagepassBroker", "StagepassJOSE", "StagepassVerify", .product(name: "GRDB", package: "GRDB.swift"),
            ],
            exclude: ["WebAuthn/vectors"],  // recorded WebAuthn data, read from the source tree by the tests
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "StagepassHTTPTests",
            dependencies: [
                "StagepassHTTP", "StagepassBroker", "StagepassVerify",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "Yams", package: "Yams"),  // reads Specs/openapi.yaml in the conformance test
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOEmbedded", package: "swift-nio"),
                .product(name: "NIOHTTPTypes", package: "swift-nio-extras"),
            ],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "StagepassCLITests",
            dependencies: [
                "stagepass",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: upcoming
        ),
        // The C ABI as a C program sees it: the shipped header as a module, its functions called from the tests.
        .target(
            name: "StagepassVerifyCHeader",
            dependencies: ["StagepassVerifyC"],
            path: "Tests/StagepassVerifyCHeader"
        ),
        .testTarget(
            name: "StagepassVerifyCTests",
            dependencies: ["StagepassVerifyCHeader"],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "StagepassHummingbirdTests",
            dependencies: [
                "StagepassHummingbird", "StagepassVerify", "StagepassVerifyFetch", "StagepassJOSE",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: upcoming
        ),
        .testTarget(
            name: "StagepassVerifyFetchTests",
            dependencies: [
                "StagepassVerifyFetch", "StagepassVerify", "StagepassJOSE",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "HummingbirdTesting", package: "hummingbird"),
            ],
            swiftSettings: upcoming
        ),
    ],
    swiftLanguageModes: [.v6]
)
