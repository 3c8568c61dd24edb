// swift-tools-version:5.7
// SwiftPM package for quill: the C module (CQuill) over include/quill.h, and a thin Swift
// wrapper (Quill). Link against an installed libquill (scripts/install.sh).
import PackageDescription

let package = Package(
    name: "Quill",
    products: [.library(name: "Quill", targets: ["Quill"])],
    targets: [
        .systemLibrary(name: "CQuill", path: "Sources/CQuill", pkgConfig: "quill"),
        .target(name: "Quill", dependencies: ["CQuill"], path: "Sources/Quill"),
    ]
)
