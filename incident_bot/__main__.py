from incident_bot.cli import main

raise SystemExit(main())
