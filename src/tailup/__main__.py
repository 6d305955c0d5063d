from tailup.cli import main

raise SystemExit(main())
