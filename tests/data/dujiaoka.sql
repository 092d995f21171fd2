-- Test fixture: dujiaoka's `orders` and `pays` tables as dujiaoka 2.0.6 creates them on MySQL/MariaDB
-- (columns, types, defaults, character sets and indexes as dujiaoka's migrations define them), for the simulator's
-- dujiaoka mirror and paymon's dujiaoka source tests.

CREATE TABLE orders (
  id bigint NOT NULL AUTO_INCREMENT,
  order_sn varchar(150) CHARACTER SET utf8 COLLATE utf8_unicode_ci NOT NULL,
  goods_id int NOT NULL,
  coupon_id int DEFAULT 0,
  title varchar(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
  type tinyint(1) NOT NULL DEFAULT 1,
  goods_price decimal(10,2) NOT NULL DEFAULT 0.00,
  buy_amount int NOT NULL DEFAULT 1,
  coupon_discount_price decimal(10,2) NOT NULL DEFAULT 0.00,
  wholesale_discount_price decimal(10,2) NOT NULL DEFAULT 0.00,
  total_price decimal(10,2) NOT NULL DEFAULT 0.00,
  actual_price decimal(10,2) NOT NULL DEFAULT 0.00,
  search_pwd varchar(200) CHARACTER SET utf8 COLLATE utf8_unicode_ci DEFAULT '',
  email varchar(200) CHARACTER SET utf8 COLLATE utf8_unicode_ci NOT NULL,
  info text CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci,
  pay_id int DEFAULT NULL,
  buy_ip varchar(50) CHARACTER SET utf8 COLLATE utf8_unicode_ci NOT NULL,
  trade_no varchar(200) CHARACTER SET utf8 COLLATE utf8_unicode_ci DEFAULT '',
  status tinyint(1) NOT NULL DEFAULT 1,
  coupon_ret_back tinyint(1) NOT NULL DEFAULT 0,
  created_at timestamp NULL DEFAULT NULL,
  updated_at timestamp NULL DEFAULT NULL,
  deleted_at timestamp NULL DEFAULT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY idx_order_sn (order_sn),
  KEY idx_goods_id (goods_id),
  KEY idex_email (email)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb3 COLLATE=utf8_unicode_ci;

CREATE TABLE pays (
  id int NOT NULL AUTO_INCREMENT,
  pay_name varchar(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
  pay_check varchar(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
  pay_method tinyint(1) NOT NULL,
  pay_client tinyint(1) NOT NULL DEFAULT 1,
  merchant_id varchar(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci DEFAULT NULL,
  merchant_key text CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci,
  merchant_pem text CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
  pay_handleroute varchar(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL,
  is_open tinyint(1) NOT NULL DEFAULT 1,
  created_at timestamp NULL DEFAULT NULL,
  updated_at timestamp NULL DEFAULT NULL,
  deleted_at timestamp NULL DEFAULT NULL,
  PRIMARY KEY (id),
  UNIQUE KEY idx_pay_check (pay_check)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
