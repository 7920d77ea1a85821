from .proof import main

raise SystemExit(main())
