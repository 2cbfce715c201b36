module libreason.org/go/reason

go 1.19
