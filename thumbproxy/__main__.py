from thumbproxy.cli import main

raise SystemExit(main())
