{
  "targets": [
    {
      "target_name": "herdless",
      "sources": ["native/addon.cc"],
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_cc": ["-std=c++17", "-fstack-protector-strong", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc!": ["-fno-exceptions", "-std=gnu++1y", "-std=gnu++17"],
      "ldflags": ["-pthread", "-Wl,-z,relro,-z,now"],
      "libraries": ["-ldl"],
      "conditions": [
        ["OS=='linux'", { "sources": [
          "native/errors.cc", "native/listener.cc", "native/channel.cc", "native/scoreboard.cc",
          "native/acceptor.cc", "native/inbox.cc", "native/process.cc",
          "native/loop-state.cc", "native/placement.cc", "native/listen-queue.cc", "native/notify.cc", "native/proxy-reader.cc"
        ], "defines": ["HERDLESS_LINUX=1"] }]
      ]
    }
  ]
}
