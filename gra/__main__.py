from gra.cli import main

raise SystemExit(main())
