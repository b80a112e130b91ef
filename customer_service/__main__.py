from customer_service.cli import main

main()
