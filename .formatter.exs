[
  inputs: ["{mix,.formatter}.exs", "{config,lib,mix,test,bench}/**/*.{ex,exs}"],
  line_length: 120
]
