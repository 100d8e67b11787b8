{
  "targets": [
    {
      "target_name": "multiprocessing",
      "sources": [
        "native/addon.cc",
        "native/errors.cc",
        "native/fork.cc",
        "native/fork_threadpool.cc",
        "native/fork_streams.cc",
        "native/wait.cc",
        "native/shm.cc",
        "native/futex.cc",
        "native/popen.cc",
        "native/connection.cc",
        "native/fd_wait.cc",
        "native/socket.cc",
        "native/queue_ring.cc",
        "native/thread_alive.cc",
        "native/framed_channel.cc",
        "native/pool_link.cc",
        "native/child_platform.cc",
        "native/shared_code.cc",
        "native/internals.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [
        ["OS=='linux'", {
          "ldflags": ["-Wl,-z,now"]
        }],
        ["OS=='mac'", {
          "xcode_settings": {
            "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
            "MACOSX_DEPLOYMENT_TARGET": "11.0"
          }
        }],
        ["OS=='win'", {
          "sources!": ["native/fork.cc", "native/fork_threadpool.cc", "native/fork_streams.cc", "native/wait.cc", "native/shm.cc", "native/futex.cc", "native/popen.cc", "native/connection.cc", "native/fd_wait.cc", "native/socket.cc", "native/queue_ring.cc", "native/thread_alive.cc", "native/framed_channel.cc", "native/pool_link.cc", "native/child_platform.cc", "native/shared_code.cc", "native/internals.cc"],
          "sources": ["native/unsupported.cc"],
          "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1 } }
        }]
      ]
    }
  ]
}
