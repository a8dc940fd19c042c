{
  "targets": [
    {
      "target_name": "herdless",
      "sources": ["native/addon.cc"],
      "include_dirs": ["native"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_cc": ["-std=c++17", "-fstack-protector-strong", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++1y", "-std=gnu++17"],
      "ldflags": ["-pthread", "-Wl,-z,relro,-z,now"],
      "libraries": ["-ldl"],
      "conditions": [
        ["OS=='linux'", { "sources": [
          "native/shared/errors.cc", "native/shared/channel.cc", "native/shared/scoreboard.cc", "native/shared/process.cc",
          "native/primary/acceptor.cc", "native/primary/accept-thread.cc", "native/primary/short-slice.cc", "native/primary/hand-off.cc",
          "native/primary/listener-set.cc", "native/primary/listener.cc", "native/primary/peer-credentials.cc",
          "native/primary/placement.cc", "native/primary/listen-queue.cc", "native/primary/notify.cc",
          "native/primary/proxy-reader.cc",
          "native/worker/inbox.cc", "native/worker/loop-state.cc"
        ], "defines": ["HERDLESS_LINUX=1"] }]
      ]
    }
  ]
}
